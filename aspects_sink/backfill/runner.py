"""
The batch loop of a backfill: read a page of keys, serialize it with the sink's code, one INSERT per
table, acknowledge it in the checkpoint, rest, repeat; reading the next batch while ClickHouse stores one.

Every batch gets its own row version from the LMS database's sequence, taken just before its rows are
read (docs/decisions/0002-row-versions.rst), so rows a backfill sends never win over newer rows the live
path sent meanwhile, and re-sending an object collapses into one row.

When ClickHouse rejects a batch, or an object cannot be serialized, the batch is split in halves until
the objects at fault are alone; they are counted as failed and named in the log while the others go
through. When ClickHouse is unavailable the run stops: its checkpoint says where to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aspects_sink import outbox
from aspects_sink.backfill.checkpoints import Checkpoint
from aspects_sink.backfill.source import BackfillSource, Page
from aspects_sink.sinks.base import SerializationError, Stamp
from aspects_sink.transport import ClickHouseRejected, ClickHouseTransport, ColumnBatch

log = logging.getLogger(__name__)

MAX_ERRORS_KEPT = 20


@dataclass
class Tally:
    """What a run did with one sink's objects; ``errors`` holds the first failures, for the operator."""

    rows: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.rows += other.rows
        self.skipped += other.skipped
        self.failed += other.failed
        self.errors.extend(other.errors[: MAX_ERRORS_KEPT - len(self.errors)])


def dump_range(
    source: BackfillSource,
    checkpoint: Checkpoint,
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
    RangeDump(source, checkpoint, transport, tally, on_batch).run(pages)
    return tally


@dataclass
class _Batch:
    """A page read and serialized, and its insert once submitted; ``error`` if it could not be serialized."""

    page: Page
    stamp: Stamp
    writes: list[ColumnBatch] = field(default_factory=list)
    error: Exception | None = None
    insert: Future | None = None


class RangeDump:
    """
    The batch loop, two deep: while ClickHouse stores batch N (on a thread of its own, as that is mostly
    waiting), batch N+1 is read from the database. Batches are still acknowledged one by one, in order,
    and only after ClickHouse acknowledged them; the database is only ever used from the calling thread.
    """

    def __init__(
        self,
        source: BackfillSource,
        checkpoint: Checkpoint,
        transport: ClickHouseTransport,
        tally: Tally,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.source = source
        self.checkpoint = checkpoint
        self.transport = transport
        self.tally = tally
        self.on_batch = on_batch

    def run(self, pages: Iterable[Page]) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aspects-sink-backfill-insert") as inserter:
            in_flight: _Batch | None = None
            try:
                for page in pages:
                    batch = self._read(page)
                    previous, in_flight = in_flight, None
                    if previous is not None:
                        self._settle(previous)
                    if batch.error is None and batch.writes:
                        batch.insert = inserter.submit(self._insert, batch.writes)
                    in_flight = batch
            except BaseException:  # Ctrl-C or a database error while a batch was being stored
                if in_flight is not None:
                    self._acknowledge_if_stored(in_flight)
                raise
            if in_flight is not None:
                self._settle(in_flight)
        self.checkpoint.finish()

    def _read(self, page: Page) -> _Batch:
        batch = _Batch(page, Stamp(version=outbox.allocate_version()) if page.keys else Stamp(version=0))
        if page.keys:
            span = (page.start, page.last) if page.whole_range else None
            try:
                batch.writes = self.source.writes(page.keys, batch.stamp, span)
            except SerializationError as error:
                batch.error = error
        return batch

    def _insert(self, writes: Sequence[ColumnBatch]) -> None:
        for write in writes:
            self.transport.insert(write)

    def _settle(self, batch: _Batch) -> None:
        """Wait for the batch's insert, isolate any objects ClickHouse refused, and acknowledge it."""
        counts = Tally(skipped=batch.page.skipped)
        try:
            if batch.error is not None:
                raise batch.error
            if batch.insert is not None:
                batch.insert.result()
            counts.rows = self.source.own_rows(batch.writes)
        except (ClickHouseRejected, SerializationError):
            self._isolate(batch.page.keys, batch.stamp, counts)
        self.checkpoint.acknowledge(
            batch.page.last,
            rows=counts.rows,
            skipped=counts.skipped,
            failed=counts.failed,
            error=counts.errors[0] if counts.errors else "",
        )
        self.tally.add(counts)
        if self.on_batch:
            self.on_batch(batch.page.examined)

    def _acknowledge_if_stored(self, batch: _Batch) -> None:
        """Record a batch that reached ClickHouse before the run stopped; anything else is left for --resume."""
        stored = batch.error is None and (batch.insert is None or batch.insert.exception() is None)
        if stored:
            self._settle(batch)

    def _isolate(self, keys: Sequence[Any], stamp: Stamp, counts: Tally) -> None:
        """Send the two halves of a refused batch on their own, down to the single objects at fault."""
        if len(keys) == 1:
            self._send(keys, stamp, counts)
            return
        middle = len(keys) // 2
        self._send(keys[:middle], stamp, counts)
        self._send(keys[middle:], stamp, counts)

    def _send(self, keys: Sequence[Any], stamp: Stamp, counts: Tally) -> None:
        try:
            writes = self.source.writes(keys, stamp)
            self._insert(writes)
        except (ClickHouseRejected, SerializationError) as error:
            if len(keys) > 1:
                self._isolate(keys, stamp, counts)
                return
            message = f"{self.source.name} {keys[0]}: {error}"
            log.warning("aspects_sink backfill: %s", message)
            counts.failed += 1
            if len(counts.errors) < MAX_ERRORS_KEPT:
                counts.errors.append(message)
            return
        counts.rows += self.source.own_rows(writes)
