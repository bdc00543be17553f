"""
Drain the outbox: claim a batch, read the objects, insert once per table, acknowledge; and sweep for
drains whose wake-up was lost.

Repeated changes to one object coalesce (a batch reads each object once). A failed batch goes through the
one failure-isolation routine (:mod:`aspects_sink.isolation`), and what happens next depends on whose
fault it was:

* ClickHouse unavailable (network, overload): the batch waits with jittered exponential backoff, as long as
  it takes; the try is given back, so an outage never parks anything.
* ClickHouse misconfigured (a table, column, database, user or grant wrong): the sink pauses as a whole —
  an ERROR line and a paused :class:`~aspects_sink.models.SinkHealth` at every probe, probes further and
  further apart up to ``ASPECTS_SINK_RETRY_MAX_SECONDS`` — and resumes by itself once a probe succeeds.
  Nothing is parked and no try is counted.
* The LMS database failing (a deadlock): the batch is given back and tried again; nothing is blamed.
* The data at fault (ClickHouse rejects rows, an object cannot be serialized): the batch is split until the
  bad objects are alone, within a bound of inserts and time; they are retried and, after
  ``ASPECTS_SINK_MAX_ATTEMPTS`` tries, parked as dead letters naming the object and the reason, while every
  other object goes through.

The same drain serves queues with a table of their own, as the sink declares its queue: xAPI statements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from aspects_sink import apm, health, mutations, outbox, retirement, scheduling
from aspects_sink.conf import aspects_settings
from aspects_sink.connection import get_transport
from aspects_sink.isolation import Isolation, Limits, isolate
from aspects_sink.models import SinkHealth, VersionTick
from aspects_sink.outbox import LEASE, Claimed, Queue
from aspects_sink.sinks.base import Sink, Stamp, Statement
from aspects_sink.sinks.registry import all_sinks, get_sink
from aspects_sink.transport import ClickHouseMisconfigured, ClickHouseTransport, ClickHouseUnavailable, ColumnBatch

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


@dataclass
class Written:
    """What one call of :func:`write` sent: statements (INSERTs or mutations) and rows inserted."""

    statements: int = 0
    rows: int = 0


def write(sink: Sink, object_ids: Sequence[str], transport: ClickHouseTransport, written: Written | None = None) -> int:
    """
    Send the current state of these objects: one INSERT per table (or the sink's statements, mutations
    followed to their end), then let retirement look at what was written (:func:`retirement.after_write`);
    return the statements sent. The sink's own table goes last (its writes list it last), so an object whose
    other rows failed is never shown as current there.

    A write that raises may still have landed, and so may the ones before it: retirement looks at those too
    (:func:`retirement.send_each`), or a learner retired meanwhile would keep those rows for good, and the
    error is raised unchanged.
    """
    stamp = Stamp(version=VersionTick.allocate())
    written = written if written is not None else Written()
    writes = sink.writes_for(object_ids, stamp)

    def send(item: ColumnBatch | Statement) -> None:
        if isinstance(item, ColumnBatch):
            written.rows += transport.insert(item)
        elif item.mutates:
            mutations.run(
                transport, item.sql, item.parameters, item.settings, item.mutates, mutations_log=item.mutations_log
            )
        else:
            transport.command(item.sql, item.parameters, item.settings)

    retirement.send_each(sink, writes, send)
    written.statements += len(writes)
    retirement.after_write(sink, object_ids, writes)
    return len(writes)


@apm.observed_drain
def drain(sink_name: str, transport: ClickHouseTransport | None = None, time_budget: float = 30.0) -> DrainReport:
    """
    Send what the outbox holds for one sink, batch after batch, until it is empty or the budget is spent.

    A batch smaller than the queue's batch size (``ASPECTS_SINK_BATCH_SIZE``, and at most the sink's
    ``objects_per_batch`` for sinks that fan out into many rows), unless entries tried before cut it short, means
    the backlog is gone: the drain stops
    and, if entries arrived meanwhile, asks to run again after the sink's drain interval, so a steady stream
    of changes becomes about one INSERT per table per interval instead of one per change. A fan-out sink
    writes each object once per drain (:func:`_once_per_drain`).
    """
    sink, queue = get_sink(sink_name), outbox.queue(sink_name)
    transport = transport or get_transport()
    report = DrainReport(sink_name)
    paused_for = _paused_for(sink_name)
    if paused_for > 0:
        report.next_run_in = paused_for  # misconfigured: the next probe is not due yet
        return report
    _alarm_if_too_long(queue)
    batch_size = min(queue.batch_size, sink.objects_per_batch or queue.batch_size)
    started = time.monotonic()
    written_objects: set[str] = set()
    while True:
        claimed = queue.claim(batch_size)
        if not claimed:
            break
        # A batch cut short by entries tried before (``Queue.claim``) is no sign that the backlog is gone.
        full = len(claimed) == batch_size or any(entry.attempts > 1 for entry in claimed)
        if not sink.is_enabled():
            log.info("aspects_sink: %s is disabled; dropping %d outbox entries", sink_name, len(claimed))
            queue.acknowledge(claimed, whole_lease=True)
            health.record_switched_off(sink_name)
            continue
        if sink.objects_per_batch:
            claimed = _once_per_drain(
                sink, queue, claimed + queue.claim_same_objects(claimed), written_objects, started
            )
            if not claimed:
                break  # all written by this drain already: the next drain takes them (released, maybe due now)
        # Splitting ends within the drain's budget and well within the lease, so no other worker re-claims.
        seconds = min(time_budget - (time.monotonic() - started), LEASE.total_seconds() / 2)
        if not _deliver(sink, queue, claimed, transport, report, seconds=seconds):
            return report
        if not full or time.monotonic() - started > time_budget:
            break
    report.next_run_in = _next_run_in(sink, report, time.monotonic() - started)
    return report


def _once_per_drain(
    sink: Sink, queue: Queue, claimed: list[Claimed], written_objects: set[str], started: float
) -> list[Claimed]:
    """
    A fan-out sink writes an object at most once per drain: its write is a whole course's dump. Entries of an
    object this drain already wrote (a course published again while the drain dumped it) get their try back
    and wait until the next drain may start, one drain interval after this one started; the rest are returned
    to be written, and their objects recorded in ``written_objects``.
    """
    again = [entry for entry in claimed if entry.object_id in written_objects]
    if again:
        queue.release(again, max(sink.drain_interval - (time.monotonic() - started), 0.0))
    first = [entry for entry in claimed if entry.object_id not in written_objects]
    written_objects.update(entry.object_id for entry in first)
    return first


def _alarm_if_too_long(queue: Queue) -> None:
    """An ERROR line at every drain while the queue's table holds ``ASPECTS_SINK_QUEUE_ALARM_ENTRIES`` or more."""
    bound = int(aspects_settings.ASPECTS_SINK_QUEUE_ALARM_ENTRIES)
    if bound and (size := queue.size_bound()) >= bound:
        log.error(
            "aspects_sink: the queue of %s holds about %d entries (alarm at %d): ClickHouse has been away or slow "
            "for long; nothing is dropped, the LMS database grows until the drain catches up",
            queue.name,
            size,
            bound,
        )


def _paused_for(sink_name: str) -> float:
    """
    Seconds until a sink paused by a configuration error is probed again, 0 if not paused or due. Probes come
    further apart the longer the pause lasts (about as long as it has lasted), from the retry base to its
    maximum, so a sink stuck for hours costs one failed statement and one ERROR line every few minutes.
    """
    state = health.pause_of(sink_name)
    if state is None or state.last_error_at is None:
        return 0.0
    lasted = (state.last_error_at - state.paused_since).total_seconds()
    wait = min(
        max(lasted, float(aspects_settings.ASPECTS_SINK_RETRY_BASE_SECONDS)),
        float(aspects_settings.ASPECTS_SINK_RETRY_MAX_SECONDS),
    )
    return max((state.last_error_at - timezone.now()).total_seconds() + wait, 0.0)


def _next_run_in(sink: Sink, report: DrainReport, elapsed: float) -> float | None:
    """
    When the next entry is due, and after a drain that delivered no sooner than one drain interval after this
    one started (``elapsed`` seconds ago): drains start once per interval, however long each took.
    """
    due = outbox.queue(sink.name).next_due()
    if due is None:
        return None
    wait = (due - timezone.now()).total_seconds()
    return max(wait, sink.drain_interval - elapsed if report.delivered else 0.0, 0.0)


def _deliver(
    sink: Sink,
    queue: Queue,
    claimed: list[Claimed],
    transport: ClickHouseTransport,
    report: DrainReport,
    *,
    seconds: float,
) -> bool:
    """
    Deliver a claimed batch through the failure-isolation routine and settle every entry by the outcome of its
    object. Return False when the batch stopped for something that is not the data's fault (the drain stops).
    """
    by_object: dict[str, list[Claimed]] = {}
    for entry in claimed:
        by_object.setdefault(entry.object_id, []).append(entry)
    written = Written()
    result: Isolation[str] = isolate(
        list(by_object),
        lambda object_ids: write(sink, object_ids, transport, written),
        limits=Limits.for_batch(len(by_object), seconds),
        splittable=sink.splittable,
    )
    report.inserts += result.statements

    def entries(object_ids):
        return [entry for object_id in object_ids for entry in by_object[object_id]]

    sent = entries(result.sent_keys)
    if sent:
        queue.acknowledge(sent, whole_lease=len(sent) == len(claimed))
        report.delivered += len(sent)
        health.record_delivery(sink.name, written.rows, result.statements)
    for object_ids, error in result.rejected:
        _fail(sink, queue, entries(object_ids), error, report)
    undecided = entries(result.undecided)
    if result.stopped_by is not None:
        _stopped(sink, queue, undecided, result.stopped_by, report)
        return False
    if undecided:
        # The bound on splitting was reached: these were tried (and counted); later claims split them further.
        queue.postpone(undecided)
        report.retried += len(undecided)
    return True


def _stopped(sink: Sink, queue: Queue, claimed: list[Claimed], error: Exception, report: DrainReport) -> None:
    """The batch stopped for something that is not the data's fault: give the entries back and wait."""
    report.retried += len(claimed)
    report.errors.append(str(error))
    waits = max((entry.waits for entry in claimed), default=0) + 1
    if isinstance(error, ClickHouseMisconfigured):
        report.next_run_in = queue.give_back(claimed, error, waits)
        health.record_failure(sink.name, SinkHealth.CONFIGURATION, str(error), pause=True)
        log.error(
            "aspects_sink: %s is paused, its configuration is not as it needs (%s); nothing is lost, it resumes by "
            "itself once this is fixed",
            sink.name,
            error,
        )
    elif isinstance(error, ClickHouseUnavailable):
        report.next_run_in = queue.give_back(claimed, error, waits)
        health.record_failure(sink.name, SinkHealth.UNAVAILABLE, str(error))
        log.warning(
            "aspects_sink: ClickHouse unavailable for %s, retrying in %.0fs: %s", sink.name, report.next_run_in, error
        )
    else:  # the LMS database: not the objects' fault, and it may not even take the give-back
        report.next_run_in = outbox.backoff_seconds(1)
        log.warning("aspects_sink: the LMS database failed while draining %s, retrying: %s", sink.name, error)
        try:
            queue.release(claimed, report.next_run_in)
        except Exception as release_error:  # the lease runs out and the sweep sends them again
            log.warning(
                "aspects_sink: could not release %s entries (their lease will run out): %s", sink.name, release_error
            )


def _fail(sink: Sink, queue: Queue, claimed: list[Claimed], error: Exception, report: DrainReport) -> None:
    """
    The data was at fault (this try is already counted): entries tried as often as the queue allows are parked,
    the others retried later. Per entry, not per group: a group that is never split (a retirement's mutations)
    may hold entries on their first try beside one on its last.
    """
    object_id = _named(claimed)
    report.errors.append(f"{sink.name} {object_id}: {error}")
    health.record_failure(sink.name, SinkHealth.REJECTED, f"{object_id}: {error}")
    worn_out = [entry for entry in claimed if entry.attempts >= queue.max_attempts]
    again = [entry for entry in claimed if entry.attempts < queue.max_attempts]
    if worn_out:
        queue.park(worn_out, error)
        report.parked += len(worn_out)
        log.error("aspects_sink: parked %s %s as a dead letter: %s", sink.name, _named(worn_out), error)
    if again:
        queue.retry_later(again, error)
        report.retried += len(again)
        log.warning("aspects_sink: %s %s was rejected, will retry: %s", sink.name, _named(again), error)


def _named(entries: list[Claimed]) -> str:
    """The object of these entries, or how many entries they are (of several objects)."""
    return entries[0].object_id if len({entry.object_id for entry in entries}) == 1 else f"{len(entries)} entries"


# Entries of a name no sink of this process has: a site sink removed (or not installed here) with work left.
NO_SUCH_SINK = (
    "aspects_sink: %s: no such sink here, %d entries pending (a site sink removed?): reinstall it to send them, "
    "or delete its entries from aspects_sink_outboxentry"
)


def sweep() -> list[str]:
    """
    Wake the drain of every sink with pending entries unless one is already scheduled; return those woken.

    Entries due for longer than ``LOST_AFTER`` seconds past the sink's drain interval mean a wake-up was
    lost (a broker restart drops queued tasks): those sinks are drained at once, whatever the cache says.
    """
    now = timezone.now()
    woken = []
    known = all_sinks()
    for sink_name, summary in outbox.summaries().items():
        if not summary.pending:
            continue
        if sink_name not in known:
            log.warning(NO_SUCH_SINK, sink_name, summary.pending)
            continue
        late = (now - summary.next_due).total_seconds()
        overdue = late > scheduling.drain_interval(sink_name) + scheduling.LOST_AFTER
        if scheduling.wake_from_sweep(sink_name, overdue):
            woken.append(sink_name)
    return woken
