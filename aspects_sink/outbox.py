"""
Outbox operations in the LMS database: record work, claim a batch, acknowledge, retry, park.

A claim is a lease (like a queue's visibility timeout): claimed entries become invisible for
``LEASE`` and are deleted on success; if the worker dies, the lease runs out and the sweep sends
them again. Nothing is ever removed before ClickHouse has acknowledged it.

Each sink's work is a :class:`Queue`. Platform objects share the ``OutboxEntry`` table, where an
entry only names the object (it is read again when sent). Work that carries its own payload, such
as xAPI statements, which cannot be read again later, has a table of its own, registered with
:func:`register`; the same operations, drains, sweep and dead-letter tools then serve it.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, QuerySet
from django.utils import timezone

from aspects_sink.models import LeasedEntry, OutboxEntry, VersionTick

if TYPE_CHECKING:
    from aspects_sink.sinks.base import Sink

log = logging.getLogger(__name__)

LEASE = datetime.timedelta(minutes=5)
_CHUNK = 900  # stay under SQLite's bound on parameters per statement


@dataclass(frozen=True)
class Claimed:
    """An outbox entry a worker holds the lease on; ``object_id`` is what its sink is handed to write."""

    id: int
    object_id: str
    attempts: int


@dataclass(frozen=True)
class Queue:
    """
    One sink's pending work and dead letters in the LMS database.

    ``model`` is the table: ``OutboxEntry`` (shared by every sink, told apart by ``sink``) or a table of
    the queue's own (``sink_field`` None), whose rows carry their payload. ``key_field`` is the column
    handed to the sink as object ids. ``sink`` is the sink that writes the rows when it is not one of the
    registry's (:func:`aspects_sink.delivery.drain_target`). Batch size, tries before parking, and a
    bound on dead letters come from the settings named here.
    """

    name: str
    model: type[LeasedEntry] = OutboxEntry
    sink_field: str | None = "sink"
    key_field: str = "object_id"
    sink: Sink | None = None
    batch_size_setting: str = "ASPECTS_SINK_BATCH_SIZE"
    max_attempts_setting: str = "ASPECTS_SINK_MAX_ATTEMPTS"
    # None: dead letters are kept until replayed. Otherwise the oldest beyond the bound are deleted, each
    # logged as an error with ``payload_field``, so a flood of rejected entries cannot fill the database.
    max_dead_setting: str | None = None
    payload_field: str | None = None

    @property
    def entries(self) -> QuerySet:
        manager = self.model._default_manager
        return manager.filter(**{self.sink_field: self.name}) if self.sink_field else manager.all()

    @property
    def batch_size(self) -> int:
        return int(getattr(settings, self.batch_size_setting))

    @property
    def max_attempts(self) -> int:
        """Failed tries after which an entry ClickHouse keeps rejecting is parked as a dead letter."""
        return int(getattr(settings, self.max_attempts_setting))

    def add(self, entries: Sequence[LeasedEntry]) -> int:
        """Record entries in the caller's transaction; wake a drain after commit (nothing if it rolls back)."""
        if not entries:
            return 0
        if len(entries) == 1:
            entries[0].save()  # the usual case for a statement; a third cheaper than bulk_create
        else:
            self.model._default_manager.bulk_create(entries)
        transaction.on_commit(lambda: _wake(self.name))
        return len(entries)

    def claim(self, limit: int) -> list[Claimed]:
        """
        Take the lease on up to ``limit`` entries ready to send, oldest first.

        Claiming is one conditional UPDATE (tag the entries still ready with a fresh token and push
        their ``available_at`` past the lease) followed by a read of that token. It needs no locking
        read, so it behaves the same on MySQL and on SQLite, where a read that later writes inside one
        transaction fails at once with "database is locked" when another process writes.
        """
        now = timezone.now()
        ready = self.entries.filter(state=LeasedEntry.PENDING, available_at__lte=now)
        candidates = list(ready.order_by("id").values_list("id", flat=True)[:limit])
        if not candidates:
            return []
        token = uuid.uuid4().hex
        for chunk in _chunks(candidates):
            ready.filter(id__in=chunk).update(claim=token, available_at=now + LEASE)
        mine = self.model._default_manager.filter(claim=token).order_by("id")
        return [Claimed(*row) for row in mine.values_list("id", self.key_field, "attempts")]

    def acknowledge(self, claimed: Sequence[Claimed]) -> None:
        """ClickHouse has the rows: forget the entries."""
        for chunk in _chunks([entry.id for entry in claimed]):
            self.model._default_manager.filter(id__in=chunk).delete()

    def retry_later(self, claimed: Sequence[Claimed], error: Exception) -> float:
        """Count a failed try and hide the entries until their backoff has passed; return the delay."""
        delay = backoff_seconds(max(entry.attempts for entry in claimed) + 1)
        self._update(
            claimed,
            attempts=F("attempts") + 1,
            available_at=timezone.now() + datetime.timedelta(seconds=delay),
            last_error=_describe(error),
        )
        return delay

    def park(self, claimed: Sequence[Claimed], error: Exception) -> None:
        """Move entries to the dead letters, with the error that put them there, within the queue's bound."""
        self._update(claimed, attempts=F("attempts") + 1, state=LeasedEntry.DEAD, last_error=_describe(error))
        if self.max_dead_setting:
            self._evict_oldest_dead(int(getattr(settings, self.max_dead_setting)))

    def dead_letters(self) -> QuerySet:
        return self.entries.filter(state=LeasedEntry.DEAD).order_by("id")

    def replay(self, ids: Sequence[int] | None = None) -> int:
        """Put dead letters back in the queue (all, or those ids) and wake the drain after commit."""
        dead = self.entries.filter(state=LeasedEntry.DEAD)
        if ids is not None:
            dead = dead.filter(id__in=ids)
        count = dead.update(state=LeasedEntry.PENDING, attempts=0, available_at=timezone.now())
        if count:
            transaction.on_commit(lambda: _wake(self.name))
        return count

    def summary(self) -> dict:
        """How many entries are pending, how many are dead, and when the next is due."""
        info = {"pending": 0, "dead": 0, "next_due": None}
        for row in self.entries.values("state").annotate(count=Count("id"), due=Min("available_at")):
            _count_into(info, row)
        return info

    def _update(self, claimed: Sequence[Claimed], **changes) -> None:
        for chunk in _chunks([entry.id for entry in claimed]):
            self.model._default_manager.filter(id__in=chunk).update(**changes)

    def _evict_oldest_dead(self, bound: int) -> None:
        excess = self.dead_letters().count() - bound
        if excess <= 0:
            return
        fields = ("id", self.key_field, "last_error", *filter(None, [self.payload_field]))
        evicted = list(self.dead_letters().values(*fields)[:excess])
        for chunk in _chunks([row["id"] for row in evicted]):
            self.model._default_manager.filter(id__in=chunk).delete()
        for row in evicted:
            log.error("aspects_sink: %s holds more than %d dead letters; evicted the oldest: %s", self.name, bound, row)


_OWN_TABLES: dict[str, Queue] = {}


def register(queue: Queue) -> None:
    """Give the sink ``queue.name`` a table of its own; the drains, the sweep and the dead-letter tools follow."""
    _OWN_TABLES[queue.name] = queue


def queue(sink_name: str) -> Queue:
    """The queue of a sink: its own table if it registered one, else its rows of ``OutboxEntry``."""
    return _OWN_TABLES.get(sink_name) or Queue(sink_name)


def queues_with_dead_letters(sink_name: str | None = None) -> list[Queue]:
    """The queue of ``sink_name``, or every queue holding dead letters."""
    if sink_name:
        return [queue(sink_name)]
    outbox_sinks = OutboxEntry.objects.filter(state=OutboxEntry.DEAD).values_list("sink", flat=True).distinct()
    own = [own for own in _OWN_TABLES.values() if own.dead_letters().exists()]
    return [queue(name) for name in sorted(outbox_sinks)] + own


def enqueue(sink_name: str, object_ids: Iterable) -> int:
    """
    Record that these objects changed, in the caller's transaction, and wake a drain after commit.

    Called by receivers while the platform's own transaction is open: if it rolls back, the entries
    vanish with it and nothing is sent.
    """
    entries = [OutboxEntry(sink=sink_name, object_id=str(object_id)) for object_id in dict.fromkeys(object_ids)]
    return queue(sink_name).add(entries)


def _wake(sink_name: str) -> None:
    from aspects_sink.tasks import schedule_drain  # noqa: PLC0415 - tasks import this module

    schedule_drain(sink_name)


def replay_dead_letters(ids: Sequence[int] | None = None, sink_name: str | None = None) -> int:
    """
    Put dead letters back in their queues (all, some ids, or one sink's) and wake their drains.

    Ids number the rows of one table: without ``sink_name`` they are ``OutboxEntry`` ids, and queues with
    a table of their own are replayed only when no ids are given.
    """
    selected = queues_with_dead_letters(sink_name)
    if ids is not None and not sink_name:
        selected = [each for each in selected if each.model is OutboxEntry]
    return sum(each.replay(ids) for each in selected)


def allocate_version() -> int:
    """The next number of the LMS database's sequence: the version of rows read after this call."""
    tick = VersionTick.objects.create()
    VersionTick.objects.filter(id__lt=tick.id).delete()
    return tick.id


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff: base × 2^(attempts-1), capped."""
    base = float(settings.ASPECTS_SINK_RETRY_BASE_SECONDS)
    return min(base * 2 ** max(attempts - 1, 0), float(settings.ASPECTS_SINK_RETRY_MAX_SECONDS))


def pending_by_sink() -> dict[str, dict]:
    """Per sink: how many entries are pending, how many are dead, and when the next is due."""
    summary: dict[str, dict] = {}
    rows = OutboxEntry.objects.values("sink", "state").annotate(count=Count("id"), due=Min("available_at"))
    for row in rows:
        _count_into(summary.setdefault(row["sink"], {"pending": 0, "dead": 0, "next_due": None}), row)
    for own in _OWN_TABLES.values():
        info = own.summary()
        if info["pending"] or info["dead"]:
            summary[own.name] = info
    return summary


def _count_into(info: dict, row: dict) -> None:
    info[row["state"]] = row["count"]
    if row["state"] == LeasedEntry.PENDING:
        info["next_due"] = row["due"]


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:4000]
