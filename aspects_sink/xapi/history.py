"""
Tracking-log history into the raw xAPI table (``aspects_sink_xapi_history``).

Lines are read with event-routing-backends' own tracking-log parser and transformed by the processors of
the ``xapi`` tracking backend, the live route's code (ERB's allow-list and transformers), so history and
live statements are the same, ids included (see :func:`as_emitted`): a statement imported twice, or
imported after the live route sent it, collapses in ClickHouse.

Statements go to ClickHouse in batches, one INSERT each. A batch ClickHouse rejects is handed to the
statement queue, whose drains isolate the statements at fault and park them as dead letters, as on the
live route. A checkpoint file records, per log file, how many lines have their statements acknowledged
(or queued); after an interruption (Ctrl-C, ClickHouse unavailable, a killed pod) ``--resume`` continues
from there.
"""

from __future__ import annotations

import datetime
import gzip
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from django.db import transaction
from event_routing_backends.management.commands.helpers.event_log_parser import parse_json_event
from eventtracking import tracker

from aspects_sink.progress import ProgressReporter
from aspects_sink.sinks.xapi_statements import raw_batch
from aspects_sink.transport import ClickHouseRejected, ClickHouseTransport
from aspects_sink.xapi import store
from aspects_sink.xapi.backend import statements_wanted
from aspects_sink.xapi.routing import TRANSFORMER_BACKEND, XAPI_CHILD

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


class HistoryError(Exception):
    """The import cannot start: nothing to transform with, or an unreadable checkpoint."""


@dataclass
class HistoryReport:
    """What an import did; ``skipped`` lines hold no event ERB turns into xAPI, ``failed`` ones could not be."""

    lines: int = 0
    statements: int = 0
    skipped: int = 0
    failed: int = 0
    queued: int = 0  # statements of batches ClickHouse rejected, left to the drains
    seconds: float = 0.0

    @property
    def statements_per_second(self) -> float:
        return self.statements / self.seconds if self.seconds else 0.0


class HistoryCheckpoint:
    """Lines done per log file, in a JSON file replaced atomically after every acknowledged batch."""

    def __init__(self, path: Path, done: dict[str, int] | None = None):
        self.path = path
        self.done = dict(done or {})

    @classmethod
    def load(cls, path: Path) -> HistoryCheckpoint:
        if not path.exists():
            return cls(path)
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except ValueError as error:
            raise HistoryError(f"unreadable checkpoint {path}: {error}") from error

    def lines_done(self, log_file: Path) -> int:
        return self.done.get(str(log_file.resolve()), 0)

    def save(self, log_file: Path, lines: int) -> None:
        self.done[str(log_file.resolve())] = lines
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(self.done, indent=1), encoding="utf-8")
        os.replace(partial, self.path)


def open_log(path: Path) -> TextIO:
    """The lines of a tracking log, gunzipped when the file is gzip (by its first bytes, whatever its name)."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def count_lines(path: Path) -> int:
    """For the progress bar's total: one quick pass over the (decompressed) file."""
    with open_log(path) as lines:
        return sum(1 for _ in lines)


def as_emitted(timestamp):
    """
    The event's time as the live route hands it to ERB: a datetime, not the log's ISO text.

    ERB derives a statement's id from the text of the time it is given, and the live route gives it a
    datetime; transforming the log's text as such would give the same statement another id, and an
    import overlapping the live route would add rows instead of collapsing into them.
    """
    if not isinstance(timestamp, str):
        return timestamp
    try:
        return datetime.datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp


def xapi_router():
    """The ``xapi`` backend of ERB's ``event_transformer``, whose processors turn events into statements."""
    transformer = tracker.get_tracker().backends.get(TRANSFORMER_BACKEND)
    router = getattr(transformer, "backends", {}).get(XAPI_CHILD)
    if router is None:
        raise HistoryError(f"event-routing-backends' {TRANSFORMER_BACKEND}.{XAPI_CHILD} tracking backend is missing")
    return router


class HistoryImport:
    """One run over a list of log files, from the checkpoint on."""

    def __init__(
        self,
        files: Sequence[Path],
        transport: ClickHouseTransport,
        checkpoint: HistoryCheckpoint,
        *,
        batch_size: int,
        sleep_time: float = 0.0,
    ):
        self.files = list(files)
        self.transport = transport
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.sleep_time = sleep_time
        self.router = xapi_router()
        self.report = HistoryReport()

    def run(self, progress: ProgressReporter) -> HistoryReport:
        """Import every file; raises ClickHouseUnavailable (or KeyboardInterrupt) with the checkpoint saved."""
        started = time.monotonic()
        total = sum(count_lines(path) for path in self.files)
        progress.start("xAPI history", total, sum(self.checkpoint.lines_done(path) for path in self.files))
        try:
            for path in self.files:
                for lines in self._batches(path):
                    progress.advance(lines)
                    if self.sleep_time:
                        time.sleep(self.sleep_time)
        finally:
            self.report.seconds = time.monotonic() - started
        progress.finish()
        return self.report

    def _batches(self, path: Path) -> Iterator[int]:
        """Send the file's statements batch by batch after its checkpoint; yield the lines each batch covered."""
        done = acknowledged = number = self.checkpoint.lines_done(path)
        rows: list[store.StatementRow] = []
        with open_log(path) as lines:
            for number, line in enumerate(lines, start=1):
                if number <= done:
                    continue
                self.report.lines += 1
                rows += self._statements(line)
                if len(rows) >= self.batch_size:
                    self._write(rows)
                    self.checkpoint.save(path, number)
                    yield number - acknowledged
                    rows, acknowledged = [], number
        self._write(rows)
        self.checkpoint.save(path, max(number, done))
        yield max(number, done) - acknowledged

    def _statements(self, line: str) -> list[store.StatementRow]:
        event = parse_json_event(line) if line.strip() else None
        if not event or not statements_wanted(event.get("name", "")):
            self.report.skipped += 1
            return []
        event["timestamp"] = as_emitted(event.get("timestamp"))
        try:
            statements = self.router.process_event(event)
        except Exception as error:  # ERB has logged it; one bad event must not stop the history
            self.report.failed += 1
            log.warning("aspects_sink: %s event could not be transformed: %s", event.get("name"), error)
            return []
        if not statements:
            self.report.skipped += 1
        return [store.statement_row(statement) for statement in statements]

    def _write(self, rows: list[store.StatementRow]) -> None:
        if not rows:
            return
        try:
            self.transport.insert(raw_batch(rows))
        except (ClickHouseRejected, ValueError) as error:
            log.warning(
                "aspects_sink: ClickHouse refused a batch of %d history statements (%s); queued for the drains, "
                "which park the statements at fault as dead letters",
                len(rows),
                error,
            )
            with transaction.atomic():
                self.report.queued += store.queue_rows(rows)
            return
        self.report.statements += len(rows)
