"""
Outbox operations in the LMS database: record work, claim a batch, acknowledge, retry, park.

A claim is a lease (like a queue's visibility timeout): claimed entries become invisible for
``LEASE`` and are deleted on success; if the worker dies, the lease runs out and the sweep sends
them again. Nothing is ever removed before ClickHouse has acknowledged it.

Each sink's work is a :class:`Queue`, laid out as the sink declares (:class:`~aspects_sink.sinks.base.QueueSpec`):
platform objects share the ``OutboxEntry`` table, where an entry only names the object (it is read again
when sent); work that carries its own payload, such as xAPI statements, has a table of its own. The same
operations, drains, sweep and dead-letter tools serve both.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, F, Min, QuerySet
from django.utils import timezone

from aspects_sink import scheduling
from aspects_sink.conf import aspects_settings
from aspects_sink.models import LeasedEntry, OutboxEntry
from aspects_sink.sinks.base import QueueSpec
from aspects_sink.sinks.registry import UnknownSink, all_sinks, get_sink

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
class QueueSummary:
    """How many entries of one queue are pending and dead, and when the next pending one is due."""

    pending: int = 0
    dead: int = 0
    next_due: datetime.datetime | None = None


@dataclass(frozen=True)
class Queue:
    """One sink's pending work and dead letters in the LMS database, where its :class:`QueueSpec` says."""

    name: str
    spec: QueueSpec = field(default_factory=QueueSpec)

    @property
    def model(self) -> type[LeasedEntry]:
        return self.spec.model

    @property
    def entries(self) -> QuerySet:
        manager = self.model._default_manager
        return manager.filter(**{self.spec.sink_field: self.name}) if self.spec.shared else manager.all()

    @property
    def batch_size(self) -> int:
        return int(getattr(aspects_settings, self.spec.batch_size_setting))

    @property
    def max_attempts(self) -> int:
        """Failed tries after which an entry ClickHouse keeps rejecting is parked as a dead letter."""
        return int(getattr(aspects_settings, self.spec.max_attempts_setting))

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
        return [Claimed(*row) for row in mine.values_list("id", self.spec.key_field, "attempts")]

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
        if self.spec.max_dead_setting:
            self._evict_oldest_dead(int(getattr(aspects_settings, self.spec.max_dead_setting)))

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

    def summary(self) -> QueueSummary:
        """How many entries are pending, how many are dead, and when the next is due."""
        return _summary(self.entries.values("state").annotate(count=Count("id"), due=Min("available_at")))

    def _update(self, claimed: Sequence[Claimed], **changes) -> None:
        for chunk in _chunks([entry.id for entry in claimed]):
            self.model._default_manager.filter(id__in=chunk).update(**changes)

    def _evict_oldest_dead(self, bound: int) -> None:
        excess = self.dead_letters().count() - bound
        if excess <= 0:
            return
        evicted = list(self.dead_letters().values_list("id", self.spec.key_field, "last_error")[:excess])
        for chunk in _chunks([entry_id for entry_id, _, _ in evicted]):
            self.model._default_manager.filter(id__in=chunk).delete()
        field_name = self.spec.payload_field
        payload = f" (its {field_name} not logged: it may hold personal data)" if field_name else ""
        for entry_id, key, error in evicted:
            # Ids and the error's class only: a payload, or a rejection quoting it, may hold personal data.
            log.error(
                "aspects_sink: %s holds more than %d dead letters; evicted the oldest: id %s, %s %s, error %s%s",
                self.name, bound, entry_id, self.spec.key_field, key, error.split(":", 1)[0], payload,
            )  # fmt: skip


def queue(sink_name: str) -> Queue:
    """
    The queue of a sink, as the sink declares it. Entries of a sink this process does not know (a site
    sink since removed) are still shown and replayed: they sit in ``OutboxEntry`` under that name.
    """
    try:
        return Queue(sink_name, get_sink(sink_name).queue)
    except UnknownSink:
        return Queue(sink_name)


def _own_table_queues() -> list[Queue]:
    """The queues of sinks whose entries have a table of their own."""
    return [Queue(name, sink.queue) for name, sink in all_sinks().items() if not sink.queue.shared]


def queues_with_dead_letters(sink_name: str | None = None) -> list[Queue]:
    """The queue of ``sink_name``, or every queue holding dead letters."""
    if sink_name:
        return [queue(sink_name)]
    outbox_sinks = OutboxEntry.objects.filter(state=OutboxEntry.DEAD).values_list("sink", flat=True).distinct()
    own = [own for own in _own_table_queues() if own.dead_letters().exists()]
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
    scheduling.schedule_drain(sink_name)


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


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff: base × 2^(attempts-1), capped."""
    base = float(aspects_settings.ASPECTS_SINK_RETRY_BASE_SECONDS)
    return min(base * 2 ** max(attempts - 1, 0), float(aspects_settings.ASPECTS_SINK_RETRY_MAX_SECONDS))


def summaries() -> dict[str, QueueSummary]:
    """Per sink with any entries: how many are pending and dead, and when the next is due."""
    by_sink: dict[str, list[dict]] = {}
    rows = OutboxEntry.objects.values("sink", "state").annotate(count=Count("id"), due=Min("available_at"))
    for row in rows:
        by_sink.setdefault(row["sink"], []).append(row)
    found = {sink_name: _summary(rows) for sink_name, rows in by_sink.items()}
    for own in _own_table_queues():
        summary = own.summary()
        if summary.pending or summary.dead:
            found[own.name] = summary
    return found


def _summary(rows: Iterable[dict]) -> QueueSummary:
    """One queue's summary from its rows of counts by state."""
    counts = {row["state"]: row for row in rows}
    pending = counts.get(LeasedEntry.PENDING, {})
    return QueueSummary(
        pending=pending.get("count", 0),
        dead=counts.get(LeasedEntry.DEAD, {}).get("count", 0),
        next_due=pending.get("due"),
    )


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:4000]
