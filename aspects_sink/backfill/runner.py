"""
The batch loop of a backfill: read a page of keys, serialize it with the sink's code, one INSERT per
table, acknowledge it in the checkpoint, rest, repeat.

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
from dataclasses import dataclass, field
from typing import Any

from aspects_sink import apm, retirement
from aspects_sink.backfill.checkpoints import RangeCheckpoint
from aspects_sink.backfill.source import BackfillSource
from aspects_sink.isolation import Limits, isolate
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

    ``limit`` counts objects sent or failed over the whole range, including earlier runs of it.
    ``on_batch`` hears how many objects each batch dealt with. Counts are added to ``tally`` batch by
    batch, so a caller passing its own still knows what was done when this raises.
    """
    tally = tally if tally is not None else Tally()
    remaining = None if limit is None else max(limit - checkpoint.row.rows - checkpoint.row.failed, 0)
    pages = source.pages(
        batch_size, checkpoint.after, checkpoint.up_to, limit=remaining, pause=lambda: time.sleep(sleep_time)
    )
    while True:
        stamp = Stamp(version=VersionTick.allocate())  # before the page's rows are read: ADR 0002
        page = next(pages, None)
        if page is None:
            break
        batch, started = Tally(skipped=page.skipped), time.monotonic()
        if page.keys:
            span = (page.start, page.last) if page.whole_range else None
            _send(source, transport, page.keys, stamp, span=span, rows=page.rows, tally=batch)
        checkpoint.acknowledge(
            page.last,
            rows=batch.rows,
            skipped=batch.skipped,
            failed=batch.failed,
            error=batch.errors[0] if batch.errors else "",
        )
        tally.add(batch)
        apm.record_batch(
            "backfill", source.name, rows=batch.rows, inserts=batch.inserts, seconds=time.monotonic() - started,
            outcome="failed" if batch.failed else "ok",
        )  # fmt: skip
        if on_batch:
            on_batch(page.examined)
    checkpoint.finish()
    return tally


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

    Retirement looks at what each attempt wrote (:func:`retirement.after_write`), and at what it may have
    written when an INSERT raised (:func:`retirement.send_each`: a timeout after ClickHouse applied it,
    or the tables before the one that failed), as the drain's :func:`aspects_sink.delivery.write` does: the run
    that follows reads a learner retired meanwhile with the exclusion and would never queue the retirement again.
    """
    own_rows = 0

    def send(group: Sequence[Any]) -> int:
        nonlocal own_rows
        whole = len(group) == len(keys)  # the page itself: read by range, or from the rows already read
        batches = source.writes(group, stamp, span if whole else None, rows if whole else None)

        def insert(batch: ColumnBatch) -> None:
            tally.inserts += 1 if transport.insert(batch) else 0

        retirement.send_each(source.sink, batches, insert)  # a failed INSERT may have landed: ADR 0008
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
