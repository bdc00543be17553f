"""
Drain the outbox: claim a batch, read the objects, insert once per table, acknowledge; and sweep for
drains whose wake-up was lost.

Repeated changes to one object coalesce (a batch reads each object once). When ClickHouse is
unavailable the whole batch waits with exponential backoff, as long as it takes. When ClickHouse
rejects a batch, or an object cannot be serialized, the batch is split in halves until the bad
objects are alone; they are retried and, after ``ASPECTS_SINK_MAX_ATTEMPTS`` tries, parked as
dead letters with their error, while every other object goes through.

The same drain serves queues with a table of their own, as the sink declares its queue: xAPI statements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from aspects_sink import apm, outbox, scheduling
from aspects_sink.connection import get_transport
from aspects_sink.models import VersionTick
from aspects_sink.outbox import Claimed, Queue
from aspects_sink.sinks.base import Sink, Stamp, Statement
from aspects_sink.sinks.registry import get_sink
from aspects_sink.transport import ClickHouseTransport, ClickHouseUnavailable, ColumnBatch

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    """What one drain did, and when the sink wants its next drain (None: nothing is waiting)."""

    sink: str
    delivered: int = 0
    retried: int = 0
    parked: int = 0
    inserts: int = 0
    next_run_in: float | None = None
    errors: list[str] = field(default_factory=list)


def write(sink: Sink, object_ids: Sequence[str], transport: ClickHouseTransport) -> int:
    """Send the current state of these objects: one INSERT per table (or the sink's statements)."""
    stamp = Stamp(version=VersionTick.allocate())
    statements = 0
    for item in sink.writes_for(object_ids, stamp):
        if isinstance(item, ColumnBatch):
            transport.insert(item)
        elif isinstance(item, Statement):
            transport.command(item.sql, item.parameters, item.settings)
        statements += 1
    return statements


@apm.observed_drain
def drain(sink_name: str, transport: ClickHouseTransport | None = None, time_budget: float = 30.0) -> DrainReport:
    """
    Send what the outbox holds for one sink, batch after batch, until it is empty or the budget is spent.

    A batch smaller than the queue's batch size (``ASPECTS_SINK_BATCH_SIZE``) means the backlog is gone: the
    drain stops and, if entries arrived meanwhile, asks to run again after the sink's drain interval, so a steady
    stream of changes becomes about one INSERT per table per interval instead of one per change.
    """
    sink, queue = get_sink(sink_name), outbox.queue(sink_name)
    transport = transport or get_transport()
    report = DrainReport(sink_name)
    batch_size = queue.batch_size
    started = time.monotonic()
    while True:
        claimed = queue.claim(batch_size)
        if not claimed:
            break
        if not sink.is_enabled():
            log.info("aspects_sink: %s is disabled; dropping %d outbox entries", sink_name, len(claimed))
            queue.acknowledge(claimed)
            continue
        try:
            _deliver(sink, queue, claimed, transport, report)
        except ClickHouseUnavailable as error:
            report.retried += len(claimed)
            report.errors.append(str(error))
            report.next_run_in = queue.retry_later(claimed, error)
            log.warning(
                "aspects_sink: ClickHouse unavailable for %s, retrying in %.0fs: %s",
                sink_name,
                report.next_run_in,
                error,
            )
            return report
        if len(claimed) < batch_size or time.monotonic() - started > time_budget:
            break
    report.next_run_in = _next_run_in(sink, report)
    return report


def _next_run_in(sink: Sink, report: DrainReport) -> float | None:
    due = outbox.queue(sink.name).summary().next_due
    if due is None:
        return None
    wait = (due - timezone.now()).total_seconds()
    return max(wait, sink.drain_interval if report.delivered else 0.0)


def _deliver(
    sink: Sink, queue: Queue, claimed: list[Claimed], transport: ClickHouseTransport, report: DrainReport
) -> None:
    """Deliver a claimed batch; on rejection split it until the objects at fault are isolated."""
    object_ids = list(dict.fromkeys(entry.object_id for entry in claimed))
    try:
        report.inserts += write(sink, object_ids, transport)
    except ClickHouseUnavailable:
        raise
    except Exception as error:
        if len(object_ids) == 1:
            _fail(sink, queue, claimed, error, report)
            return
        middle = len(object_ids) // 2
        first_half = set(object_ids[:middle])
        _deliver(sink, queue, [entry for entry in claimed if entry.object_id in first_half], transport, report)
        _deliver(sink, queue, [entry for entry in claimed if entry.object_id not in first_half], transport, report)
        return
    queue.acknowledge(claimed)
    report.delivered += len(claimed)


def _fail(sink: Sink, queue: Queue, claimed: list[Claimed], error: Exception, report: DrainReport) -> None:
    object_id = claimed[0].object_id
    report.errors.append(f"{sink.name} {object_id}: {error}")
    if max(entry.attempts for entry in claimed) + 1 >= queue.max_attempts:
        queue.park(claimed, error)
        report.parked += len(claimed)
        log.error("aspects_sink: parked %s %s as a dead letter: %s", sink.name, object_id, error)
    else:
        queue.retry_later(claimed, error)
        report.retried += len(claimed)
        log.warning("aspects_sink: %s %s was rejected, will retry: %s", sink.name, object_id, error)


def sweep() -> list[str]:
    """
    Wake the drain of every sink with pending entries unless one is already scheduled; return those woken.

    Entries due for longer than ``LOST_AFTER`` seconds past the sink's drain interval mean a wake-up was
    lost (a broker restart drops queued tasks): those sinks are drained at once, whatever the cache says.
    """
    now = timezone.now()
    woken = []
    for sink_name, summary in outbox.summaries().items():
        if not summary.pending:
            continue
        late = (now - summary.next_due).total_seconds()
        overdue = late > scheduling.drain_interval(sink_name) + scheduling.LOST_AFTER
        if scheduling.wake_from_sweep(sink_name, overdue):
            woken.append(sink_name)
    return woken
