"""
Outbox operations in the LMS database: record work, claim a batch, acknowledge, retry, park.

A claim is a lease (like a queue's visibility timeout): claimed entries become invisible for
``LEASE`` and are deleted on success; if the worker dies, the lease runs out and the sweep sends
them again. Nothing is ever removed before ClickHouse has acknowledged it.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min
from django.utils import timezone

from aspects_sink.models import OutboxEntry, VersionTick

LEASE = datetime.timedelta(minutes=5)
_CHUNK = 900  # stay under SQLite's bound on parameters per statement


@dataclass(frozen=True)
class Claimed:
    """An outbox entry a worker holds the lease on."""

    id: int
    object_id: str
    attempts: int


def enqueue(sink_name: str, object_ids: Iterable) -> int:
    """
    Record that these objects changed, in the caller's transaction, and wake a drain after commit.

    Called by receivers while the platform's own transaction is open: if it rolls back, the entries
    vanish with it and nothing is sent.
    """
    entries = [OutboxEntry(sink=sink_name, object_id=str(object_id)) for object_id in dict.fromkeys(object_ids)]
    if not entries:
        return 0
    OutboxEntry.objects.bulk_create(entries)
    transaction.on_commit(lambda: _wake(sink_name))
    return len(entries)


def _wake(sink_name: str) -> None:
    from aspects_sink.tasks import schedule_drain  # noqa: PLC0415 - tasks import this module

    schedule_drain(sink_name)


def claim(sink_name: str, limit: int) -> list[Claimed]:
    """
    Take the lease on up to ``limit`` entries ready to send, oldest first.

    Claiming is one conditional UPDATE (tag the entries still ready with a fresh token and push
    their ``available_at`` past the lease) followed by a read of that token. It needs no locking
    read, so it behaves the same on MySQL and on SQLite, where a read that later writes inside one
    transaction fails at once with "database is locked" when another process writes.
    """
    now = timezone.now()
    ready = OutboxEntry.objects.filter(state=OutboxEntry.PENDING, sink=sink_name, available_at__lte=now)
    candidates = list(ready.order_by("id").values_list("id", flat=True)[:limit])
    if not candidates:
        return []
    token = uuid.uuid4().hex
    for chunk in _chunks(candidates):
        ready.filter(id__in=chunk).update(claim=token, available_at=now + LEASE)
    mine = OutboxEntry.objects.filter(claim=token).order_by("id").values_list("id", "object_id", "attempts")
    return [Claimed(*row) for row in mine]


def acknowledge(claimed: Sequence[Claimed]) -> None:
    """ClickHouse has the rows: forget the entries."""
    for chunk in _chunks([entry.id for entry in claimed]):
        OutboxEntry.objects.filter(id__in=chunk).delete()


def retry_later(claimed: Sequence[Claimed], error: Exception) -> float:
    """Count a failed try and hide the entries until their backoff has passed; return the delay."""
    delay = backoff_seconds(max(entry.attempts for entry in claimed) + 1)
    _update(
        claimed,
        attempts=F("attempts") + 1,
        available_at=timezone.now() + datetime.timedelta(seconds=delay),
        last_error=_describe(error),
    )
    return delay


def park(claimed: Sequence[Claimed], error: Exception) -> None:
    """Move entries to the dead letters, with the error that put them there."""
    _update(claimed, attempts=F("attempts") + 1, state=OutboxEntry.DEAD, last_error=_describe(error))


def replay_dead_letters(ids: Sequence[int] | None = None, sink_name: str | None = None) -> int:
    """Put dead letters back in the queue (all, some ids, or one sink's) and wake their drains."""
    dead = OutboxEntry.objects.filter(state=OutboxEntry.DEAD)
    if ids is not None:
        dead = dead.filter(id__in=ids)
    if sink_name:
        dead = dead.filter(sink=sink_name)
    sinks = set(dead.values_list("sink", flat=True))
    count = dead.update(state=OutboxEntry.PENDING, attempts=0, available_at=timezone.now())
    for name in sinks:
        transaction.on_commit(lambda name=name: _wake(name))
    return count


def allocate_version() -> int:
    """The next number of the LMS database's sequence: the version of rows read after this call."""
    tick = VersionTick.objects.create()
    VersionTick.objects.filter(id__lt=tick.id).delete()
    return tick.id


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff: base × 2^(attempts-1), capped."""
    base = float(settings.ASPECTS_SINK_RETRY_BASE_SECONDS)
    return min(base * 2 ** max(attempts - 1, 0), float(settings.ASPECTS_SINK_RETRY_MAX_SECONDS))


def max_attempts() -> int:
    """Failed tries after which an entry ClickHouse keeps rejecting is parked as a dead letter."""
    return int(settings.ASPECTS_SINK_MAX_ATTEMPTS)


def pending_by_sink() -> dict[str, dict]:
    """Per sink: how many entries are pending, how many are dead, and when the next is due."""
    summary: dict[str, dict] = {}
    rows = OutboxEntry.objects.values("sink", "state").annotate(count=Count("id"), due=Min("available_at"))
    for row in rows:
        info = summary.setdefault(row["sink"], {"pending": 0, "dead": 0, "next_due": None})
        info[row["state"]] = row["count"]
        if row["state"] == OutboxEntry.PENDING:
            info["next_due"] = row["due"]
    return summary


def _update(claimed: Sequence[Claimed], **changes) -> None:
    for chunk in _chunks([entry.id for entry in claimed]):
        OutboxEntry.objects.filter(id__in=chunk).update(**changes)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:4000]
