"""
The batch loop of a backfill: read a page of keys, serialize it with the sink's code, one INSERT per
table, acknowledge it in the checkpoint, rest, repeat. The INSERTs run on a thread of their own, one batch
behind the reading: while ClickHouse takes a batch, the next page is read and serialized.

Every batch gets its own row version from the LMS database's sequence, taken just before its rows are
read (docs/decisions/0002-row-versions.rst), so rows a backfill sends never win over newer rows the live
path sent meanwhile, and re-sending an object collapses into one row.

A failed batch goes through the one failure-isolation routine of every path (:mod:`aspects_sink.isolation`):
when ClickHouse rejects rows, or an object cannot be read or serialized (a modulestore error, a
``RecursionError`` in a deep tree: any error that is not ClickHouse's or the LMS database's), the batch is
split until the objects at fault are alone; they are counted as failed and named in the log and the summary
while the others go through, and the checkpoint moves past them, so ``--resume`` does not stop on them again.
When ClickHouse is unavailable or misconfigured, or the LMS database fails, the run stops: its checkpoint
says where to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aspects_sink import apm, retirement
from aspects_sink.backfill.checkpoints import RangeCheckpoint
from aspects_sink.backfill.source import BackfillSource, Page
from aspects_sink.isolation import Limits, isolate, not_the_datas_fault
from aspects_sink.models import VersionTick
from aspects_sink.sinks.base import Stamp
from aspects_sink.transport import ClickHouseTransport, ColumnBatch

log = logging.getLogger(__name__)

MAX_ERRORS_KEPT = 20


@dataclass
class Tally:
    """What a run did with one sink's objects; ``errors`` holds the first failures, for the operator."""

    rows: int = 0
    skipped: int = 0
    failed: int = 0
    inserts: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.rows += other.rows
        self.inserts += other.inserts
        self.skipped += other.skipped
        self.failed += other.failed
        self.errors.extend(other.errors[: MAX_ERRORS_KEPT - len(self.errors)])


def dump_range(
    source: BackfillSource,
    checkpoint: RangeCheckpoint,
    transport: ClickHouseTransport,
    *,
    batch_size: int,
    sleep_time: float = 0.0,
    limit: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    tally: Tally | None = None,
) -> Tally:
    """
    Dump the range of ``checkpoint`` from where it stands, batch by batch, and mark it done.

    The INSERT of a batch runs on a thread of its own (:class:`InsertThread`) while the next page is read and
    serialized here: the INSERT mostly waits on ClickHouse, the reading on the LMS database and Python. At most
    two batches are held, and batches are inserted and acknowledged one after the other in key order; a page is
    acknowledged only once ClickHouse took it. With ``sleep_time`` a batch is acknowledged before the rest that
    follows it (nothing is gained by reading during an INSERT then). When anything stops the run (ClickHouse
    unavailable, the LMS database failing, Ctrl-C), the batch in flight is waited for and acknowledged if it
    went in.

    ``limit`` counts objects sent or failed over the whole range, including earlier runs of it.
    ``on_batch`` hears how many objects each batch dealt with. Counts are added to ``tally`` batch by
    batch, so a caller passing its own still knows what was done when this raises.
    """
    tally = tally if tally is not None else Tally()
    remaining = None if limit is None else max(limit - checkpoint.row.rows - checkpoint.row.failed, 0)
    pages = source.pages(
        batch_size, checkpoint.after, checkpoint.up_to, limit=remaining, pause=lambda: time.sleep(sleep_time)
    )
    settle = partial(_settle, source, checkpoint, transport, tally=tally, on_batch=on_batch)
    in_flight: _Batch | None = None

    def settle_in_flight() -> None:
        nonlocal in_flight
        settling, in_flight = in_flight, None
        if settling is not None:
            settle(settling)

    with InsertThread(transport) as inserts:
        try:
            while True:
                if sleep_time:  # resting between batches (to spare the LMS database): the batch sent is settled first
                    settle_in_flight()
                stamp = Stamp(version=VersionTick.allocate())  # before the page's rows are read: ADR 0002
                page = next(pages, None)
                prepared = _prepare(source, page, stamp) if page is not None else None
                settle_in_flight()
                if prepared is None:
                    break
                if prepared.batches is not None:
                    prepared.insert = inserts.submit(prepared.batches)
                in_flight = prepared
        except BaseException:
            if in_flight is not None:  # the run stops: keep what ClickHouse took of the batch in flight
                _acknowledge_if_inserted(checkpoint, in_flight, settle)
            raise
    checkpoint.finish()
    return tally


@dataclass
class _Batch:
    """
    A page on its way: its rows, serialized here (``batches``; None when that failed, or when the page has no key
    to send), and the INSERT of them running on the insert thread (None when there is nothing to insert: a page
    that could not be serialized goes through failure isolation when it is settled).
    """

    page: Page
    stamp: Stamp
    batches: list[ColumnBatch] | None
    started: float
    insert: Future | None = None


def _prepare(source: BackfillSource, page: Page, stamp: Stamp) -> _Batch:
    """Serialize a page's rows; an object that cannot be serialized is left to failure isolation, when sent."""
    started = time.monotonic()
    batches = None
    if page.keys:
        span = (page.start, page.last) if page.whole_range else None
        try:
            batches = source.writes(page.keys, stamp, span, page.rows)
        except Exception as error:
            if not_the_datas_fault(error):  # the LMS database failing stops the run, as it would when sent
                raise
    return _Batch(page, stamp, batches, started)


def _settle(
    source: BackfillSource,
    checkpoint: RangeCheckpoint,
    transport: ClickHouseTransport,
    batch: _Batch,
    *,
    tally: Tally,
    on_batch: Callable[[int], None] | None,
) -> None:
    """
    Wait for a batch's INSERT and acknowledge the page. A page whose rows could not be serialized or that
    ClickHouse rejected is sent again here through failure isolation; what is not the data's fault is raised.
    """
    page, counts = batch.page, Tally(skipped=batch.page.skipped)
    if page.keys:
        try:
            inserted = batch.insert.result() if batch.insert is not None else None
        except Exception as error:
            if not_the_datas_fault(error):
                raise
            inserted = None
        if inserted is not None:
            counts.inserts += inserted
            retirement.after_write(source.sink, page.keys, batch.batches)
            counts.rows += source.own_rows(batch.batches)
        else:
            span = (page.start, page.last) if page.whole_range else None
            _send(source, transport, page.keys, batch.stamp, span=span, rows=page.rows, tally=counts)
    _acknowledge(checkpoint, page, counts)
    tally.add(counts)
    apm.record_batch(
        "backfill", source.name, rows=counts.rows, inserts=counts.inserts, seconds=time.monotonic() - batch.started,
        outcome="failed" if counts.failed else "ok",
    )  # fmt: skip
    if on_batch:
        on_batch(page.examined)


def _acknowledge(checkpoint: RangeCheckpoint, page: Page, counts: Tally) -> None:
    checkpoint.acknowledge(
        page.last,
        rows=counts.rows,
        skipped=counts.skipped,
        failed=counts.failed,
        error=counts.errors[0] if counts.errors else "",
    )


def _acknowledge_if_inserted(checkpoint: RangeCheckpoint, batch: _Batch, settle: Callable[[_Batch], None]) -> None:
    """
    When the run stops with a batch in flight: wait for its INSERT and, if ClickHouse took it whole, acknowledge
    it (nothing else is sent: a rejected or unsent batch is left for ``--resume``, which reads it again).
    """
    if batch.page.keys and (batch.insert is None or batch.insert.exception() is not None):
        return  # Future.exception() waits for the INSERT to end
    try:
        settle(batch)
    except Exception:  # the error that stopped the run is the one to report
        log.exception("aspects_sink backfill: could not acknowledge %s after %s", checkpoint, batch.page.last)


class InsertThread:
    """
    One thread sending a backfill's INSERTs, one batch at a time and in order, while the caller reads the next
    page. It uses a ClickHouse client of its own (the transport keeps one per thread), closed when the thread ends.
    """

    def __init__(self, transport: ClickHouseTransport):
        self.transport = transport
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aspects-sink-backfill-insert")

    def __enter__(self) -> InsertThread:
        return self

    def __exit__(self, *exc_info) -> None:
        self.executor.submit(self.transport.close)
        self.executor.shutdown(wait=True)

    def submit(self, batches: Sequence[ColumnBatch]) -> Future:
        """Insert the batches one after the other; the future holds the INSERTs that wrote rows."""
        return self.executor.submit(self._insert, list(batches))

    def _insert(self, batches: list[ColumnBatch]) -> int:
        return sum(1 for batch in batches if self.transport.insert(batch))


def _send(
    source: BackfillSource,
    transport: ClickHouseTransport,
    keys: Sequence[Any],
    stamp: Stamp,
    *,
    span: tuple[Any, Any] | None,
    tally: Tally,
    rows: dict[str, Sequence] | None = None,
) -> None:
    """
    Insert the rows of ``keys``; isolate the objects at fault and count them as failed. Raise what is not the
    data's fault (ClickHouse unavailable or misconfigured, the LMS database failing): the run stops there.
    """
    own_rows = 0

    def send(group: Sequence[Any]) -> int:
        nonlocal own_rows
        whole = len(group) == len(keys)  # the page itself: read by range, or from the rows already read
        batches = source.writes(group, stamp, span if whole else None, rows if whole else None)
        for batch in batches:
            tally.inserts += 1 if transport.insert(batch) else 0
        retirement.after_write(source.sink, group, batches)
        own_rows += source.own_rows(batches)
        return len(batches)

    result = isolate(list(keys), send, limits=Limits.complete(len(keys)))
    tally.rows += own_rows
    if result.stopped_by is not None:
        raise result.stopped_by
    for group, error in result.rejected:
        message = f"{source.name} {group[0]}: {type(error).__name__}: {error}"
        log.warning("aspects_sink backfill: %s", message)
        tally.failed += len(group)
        if len(tally.errors) < MAX_ERRORS_KEPT:
            tally.errors.append(message)
