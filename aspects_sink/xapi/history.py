"""
Tracking-log history into the raw xAPI table (``aspects_sink_xapi_history``).

Logs come from files or object storage (:mod:`aspects_sink.xapi.sources`), streamed and gunzipped on the
fly. Lines are read with event-routing-backends' own tracking-log parser and transformed by the processors
of the ``xapi`` tracking backend, the live route's code (ERB's allow-list and transformers), so history and
live statements are the same, ids included (:func:`aspects_sink.erb.transform`, which the live route's drain
uses too): a statement imported twice, or imported after the live route sent it, collapses in ClickHouse. The
commonest events' statements are assembled from parts ERB's transformers made for earlier events, checked
against ERB's as the import runs (:mod:`aspects_sink.erb.assembly`, docs/decisions/0013).

Statements go to ClickHouse in batches, one INSERT each. A batch ClickHouse rejects is handed to the
statement queue, whose drains isolate the statements at fault and park them as dead letters, as on the
live route. An event that cannot be imported (ERB cannot transform it, or its text cannot be stored) is
reported by log and line and left out; a log that cannot be read to its end (a corrupt gzip member) is
reported and the others go on. :class:`~aspects_sink.models.HistoryCheckpoint` records in the LMS database,
per log, how many lines have their statements acknowledged (or queued); after an interruption (Ctrl-C,
ClickHouse unavailable, a killed pod) ``--resume`` continues from there, in any process.

With ``workers`` above one, logs are imported side by side by forked processes of this one (each its own
ClickHouse client, S3 client and database connection), a log at a time each, in order, taken from a
counter they share; the parent only shows progress and adds up the reports.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import DatabaseError, connections, transaction
from event_routing_backends.management.commands.helpers.event_log_parser import parse_json_event

from aspects_sink import erb
from aspects_sink.erb import transformation
from aspects_sink.erb.assembly import Assembly
from aspects_sink.models import HistoryCheckpoint
from aspects_sink.progress import ProgressReporter
from aspects_sink.sinks.xapi_statements import raw_batch, without_retired_actors
from aspects_sink.transport import ClickHouseRejected, ClickHouseTransport, TransportError
from aspects_sink.xapi import store
from aspects_sink.xapi.backend import statements_wanted
from aspects_sink.xapi.sources import (
    MAX_LINE_BYTES,
    CorruptLog,
    CountingReader,
    LogObject,
    LogSource,
    OverlongLine,
    SourceError,
    log_lines,
)

log = logging.getLogger(__name__)

# Bad events described per log in a report (all are counted, and every one is logged).
MAX_PROBLEMS_PER_LOG = 20
_CHECKPOINT_CHUNK = 500


class HistoryError(Exception):
    """
    The import cannot start (nothing to transform with), or it stopped (ClickHouse unavailable, the LMS database
    failing under ERB's lookups, a worker died).
    """


def database_failed(error: DatabaseError) -> str:
    """Why a run stopped when the LMS database failed: no event's fault, so none is reported as bad."""
    return f"the LMS database failed ({type(error).__name__}: {error})"


@dataclass
class LogReport:
    """What became of one log in this run; ``skipped`` lines hold no event ERB turns into xAPI."""

    log: LogObject
    lines_before: int = 0  # done by an earlier run (--resume)
    lines: int = 0
    statements: int = 0
    skipped: int = 0
    failed: int = 0  # events that could not be imported
    queued: int = 0  # statements of batches ClickHouse rejected, left to the drains
    retired: int = 0  # statements of learners recorded as retired, left out (docs/decisions/0008)
    assembled: int = 0  # statements made from ERB's parts (aspects_sink.erb.assembly), ...
    by_erb: int = 0  # ... and by ERB's transformers
    bytes_read: int = 0
    error: str = ""  # why the log could not be read to its end
    problems: list[str] = field(default_factory=list)


@dataclass
class HistoryReport:
    """A whole run: sums over its logs, the logs that could not be read, and the first bad events of each."""

    logs: int = 0
    lines: int = 0
    statements: int = 0
    skipped: int = 0
    failed: int = 0
    queued: int = 0
    retired: int = 0
    assembled: int = 0
    by_erb: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    unreadable: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, report: LogReport) -> None:
        self.logs += 1
        self.lines += report.lines  # statements are counted as their batches are written, for the progress line
        self.skipped += report.skipped
        self.failed += report.failed
        self.queued += report.queued
        self.retired += report.retired
        self.assembled += report.assembled
        self.by_erb += report.by_erb
        self.bytes_read += report.bytes_read
        self.problems += report.problems
        if report.error:
            self.unreadable.append(f"{report.log.name}: {report.error}")

    @property
    def statements_per_second(self) -> float:
        return self.statements / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        """Every event of every log imported."""
        return not (self.failed or self.unreadable)


# -- checkpoints -----------------------------------------------------------------------------------


def _log_hash(log_object: LogObject) -> str:
    return hashlib.sha256(f"{log_object.source}\n{log_object.key}".encode()).hexdigest()


def lines_done(logs: Sequence[LogObject]) -> dict[str, int]:
    """Per log hash, lines an earlier run finished; a log whose size changed since, or written since, starts over."""
    done: dict[str, int] = {}
    by_hash = {_log_hash(log_object): log_object for log_object in logs}
    hashes = list(by_hash)
    for start in range(0, len(hashes), _CHECKPOINT_CHUNK):
        for checkpoint in HistoryCheckpoint.objects.filter(pk__in=hashes[start : start + _CHECKPOINT_CHUNK]):
            if _same_log(checkpoint, by_hash[checkpoint.pk]):
                done[checkpoint.pk] = -1 if checkpoint.finished else checkpoint.lines_done
    return done


def _same_log(checkpoint: HistoryCheckpoint, log_object: LogObject) -> bool:
    """
    Whether the checkpoint was made of the log as it is now: the same size, last written at the same time (to
    the second: S3 keeps no finer time; a checkpoint saved before times were kept is taken on its size).
    """
    if checkpoint.size != log_object.size:
        return False
    return checkpoint.modified is None or abs((checkpoint.modified - log_object.modified).total_seconds()) < 1


def forget(logs: Sequence[LogObject]) -> None:
    """A run without --resume starts every log from its first line."""
    hashes = [_log_hash(log_object) for log_object in logs]
    for start in range(0, len(hashes), _CHECKPOINT_CHUNK):
        HistoryCheckpoint.objects.filter(pk__in=hashes[start : start + _CHECKPOINT_CHUNK]).delete()


def _save(report: LogReport, lines: int, *, finished: bool) -> None:
    HistoryCheckpoint.objects.update_or_create(
        pk=_log_hash(report.log),
        defaults={
            "source": report.log.source,
            "key": report.log.key,
            "size": report.log.size,
            "modified": report.log.modified,
            "lines_done": lines,
            "statements": report.statements,
            "failed": report.failed,
            "finished": finished,
            "last_error": report.error,
        },
    )


# -- transformation --------------------------------------------------------------------------------


def xapi_router():
    """The ``xapi`` backend of ERB's ``event_transformer``, whose processors turn events into statements."""
    router = erb.xapi_router()
    if router is None:
        raise HistoryError(
            f"event-routing-backends' {erb.TRANSFORMER_BACKEND}.{erb.XAPI_CHILD} tracking backend is missing"
        )
    return router


def admitted(event: dict) -> bool:
    """
    Whether an event of the history is transformed at all (``ASPECTS_SINK_XAPI_EVENTS``). Statements of
    retired learners are left out per batch when written (:meth:`LogImporter._write`), as the live route does.
    """
    return statements_wanted(event.get("name", ""))


class UnreadableLine(ValueError):
    """A tracking-log line that holds no event the import can take; the message says why."""


def events_of_line(steps: erb.XapiSteps, raw_line: bytes) -> list[dict]:
    """
    The events of a tracking-log line that ERB would transform (none: not an xAPI event). Raises UnreadableLine
    when the line holds no event, or one that ERB's parser or allow-list cannot take (no name, a list for a
    name, an ``event`` text nested deeper than Python's JSON parser goes), or is longer than any event: such a
    line is reported, and the run goes on.
    """
    if isinstance(raw_line, OverlongLine):
        raise UnreadableLine(f"a line longer than {MAX_LINE_BYTES // 2**20} MiB, not a tracking event")
    try:
        event = parse_json_event(raw_line.decode("utf-8", errors="replace"))
        if event is None:
            raise UnreadableLine("not a JSON tracking event")
        return steps.admit(event) if admitted(event) else []
    except UnreadableLine:
        raise
    except Exception as error:  # ERB's parser and allow-list take lines as they come; a log may hold anything
        raise UnreadableLine(f"{type(error).__name__}: {error}") from error


class LogImporter:
    """Imports logs one at a time in this process: ERB's transformers, one INSERT per batch, a checkpoint after it."""

    def __init__(self, source: LogSource, transport: ClickHouseTransport, *, batch_size: int, sleep_time: float):
        self.source = source
        self.transport = transport
        self.batch_size = batch_size
        self.sleep_time = sleep_time
        self.steps = erb.XapiSteps.of(xapi_router())
        self.assembly = Assembly(self.steps)

    def import_log(self, log_object: LogObject, done: int, on_batch: Callable[[int, int], None]) -> LogReport:
        """
        Import the log's lines after the first ``done``; ``on_batch(bytes, statements)`` after each batch with
        the bytes read and the statements ClickHouse acknowledged since the last call.
        Raises TransportError (ClickHouse unavailable) with the checkpoint saved; a log that cannot be read
        to its end is reported in the LogReport, with what came before it imported.
        """
        report = LogReport(log_object, lines_before=done)
        made_before = self.assembly.counts.assembled, self.assembly.counts.by_erb
        acknowledged = number = done
        rows: list[erb.StatementRow] = []
        reported_bytes = reported_statements = 0
        try:
            with CountingReader(self.source.open(log_object)) as stream:
                for number, line in enumerate(log_lines(stream), start=1):
                    if number <= done:
                        continue
                    report.lines += 1
                    rows += self._statements(report, number, line)
                    if len(rows) >= self.batch_size:
                        self._write(report, rows)
                        _save(report, number, finished=False)
                        on_batch(stream.bytes_read - reported_bytes, report.statements - reported_statements)
                        rows, acknowledged = [], number
                        reported_bytes, reported_statements = stream.bytes_read, report.statements
                        if self.sleep_time:
                            time.sleep(self.sleep_time)
                report.bytes_read = stream.bytes_read
        except (CorruptLog, SourceError) as error:
            report.error = f"line {number + 1}: {error}" if isinstance(error, CorruptLog) else str(error)
            log.warning("aspects_sink: %s could not be read to its end: %s", log_object.name, report.error)
            report.bytes_read = log_object.size
        self._write(report, rows)
        _save(report, max(number, acknowledged), finished=not report.error)
        report.assembled = self.assembly.counts.assembled - made_before[0]
        report.by_erb = self.assembly.counts.by_erb - made_before[1]
        on_batch(report.bytes_read - reported_bytes, report.statements - reported_statements)
        return report

    def _statements(self, report: LogReport, number: int, raw_line: bytes) -> list[erb.StatementRow]:
        if not raw_line.strip():
            report.skipped += 1
            return []
        try:
            events = events_of_line(self.steps, raw_line)
        except UnreadableLine as error:
            self._failed(report, number, "?", str(error))
            return []
        if not events:  # left out by ASPECTS_SINK_XAPI_EVENTS or ERB's allow-list, or no transformer for it
            report.skipped += 1
            return []
        rows: list[erb.StatementRow] = []
        for each in events:
            try:
                rows += self.assembly.transform(each)
            except erb.TransformationError as error:  # one bad event must not stop the history
                self._failed(report, number, each.get("name"), error.reason)
        if not rows:
            report.skipped += 1
        return rows

    @staticmethod
    def _failed(report: LogReport, number: int, name, reason: str) -> None:
        report.failed += 1
        problem = f"{report.log.name} line {number}: {name} event not imported: {reason}"
        log.warning("aspects_sink: %s", problem)
        if len(report.problems) < MAX_PROBLEMS_PER_LOG:
            report.problems.append(problem)

    def _write(self, report: LogReport, rows: list[erb.StatementRow]) -> None:
        """Insert a batch of statements, less those of retired learners (one query per batch finds them)."""
        kept = without_retired_actors(rows)
        report.retired += len(rows) - len(kept)
        rows = kept
        if not rows:
            return
        try:
            self.transport.insert(raw_batch(rows))
        except ClickHouseRejected as error:
            log.warning(
                "aspects_sink: ClickHouse refused a batch of %d history statements of %s (%s); queued for the "
                "drains, which park the statements at fault as dead letters",
                len(rows),
                report.log.name,
                error,
            )
            with transaction.atomic():
                report.queued += store.queue_rows(rows)
            return
        report.statements += len(rows)


def ready_to_transform() -> None:
    """
    Fail before anything is listed or read when ERB is not set up (no ``xapi`` backend), or when its circuit
    breaker is off: every event would be skipped, and a run or a dry run would count none.
    """
    xapi_router()
    if not erb.xapi_switched_on():
        raise HistoryError("event-routing-backends' XAPI_EVENTS_ENABLED is off: it would make no statement")


@dataclass(frozen=True)
class LogSurvey:
    """``--dry-run``: a log's lines and the events in it that would be transformed, read but not imported."""

    log: LogObject
    lines: int
    events: int
    error: str = ""


def survey(source: LogSource, log_object: LogObject) -> LogSurvey:
    """Read one log through (gunzipped) and count its lines and the events among them ERB would transform."""
    steps = erb.XapiSteps.of(xapi_router())
    lines = events = 0
    try:
        with CountingReader(source.open(log_object)) as stream:
            for raw_line in log_lines(stream):
                lines += 1
                with contextlib.suppress(UnreadableLine):  # the import reports such a line
                    events += len(events_of_line(steps, raw_line))
    except (CorruptLog, SourceError) as error:
        return LogSurvey(log_object, lines, events, str(error))
    return LogSurvey(log_object, lines, events)


# -- a run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaySpan:
    """
    The logs that may hold events of the days ``[first, last]`` (``None`` leaves a side open): those whose day
    (:attr:`LogObject.day`) is in ``[first, last + 1]``. logrotate's date extension names a log after the day
    it rotated, and a log is last written when it rotates, so the events of a day's last hours are in a log of
    the day after; a site that names logs after the day before (``dateyesterday``) gets a day more, whose
    statements collapse with those imported or sent already.
    """

    first: datetime.date | None = None
    last: datetime.date | None = None

    @property
    def described(self) -> str:
        """The days in an error's words (empty for all days)."""
        if self.first and self.last:
            return f" of {self.first} to {self.last}"
        if self.first or self.last:
            return f" of {self.first} or later" if self.first else f" of {self.last} or earlier"
        return ""

    def __contains__(self, log_object: LogObject) -> bool:
        day = log_object.day
        return (self.first is None or day >= self.first) and (
            self.last is None or day <= self.last + datetime.timedelta(days=1)
        )


def logs_to_read(source: LogSource, days: DaySpan) -> list[LogObject]:
    """
    The source's logs that may hold events of those days, in order. None is an error (SourceError), not an
    import of nothing: a mistyped prefix or days outside the logs would otherwise succeed having done nothing.
    """
    logs = [log_object for log_object in source.objects() if log_object in days]
    if not logs:
        raise SourceError(f"no tracking log{days.described} in {source.where}")
    return logs


@contextlib.contextmanager
def _sigterm_interrupts():
    """
    A SIGTERM (``kill``, a container stopped: sent to the command's process alone) interrupts the run as
    Ctrl-C does, so the workers are stopped with it and the summary says how to go on; by default it would
    end this process alone, its forked workers still importing. A worker's SIGTERM (the parent stopping it)
    still ends it at once (:meth:`HistoryImport._work`).
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _take(counter) -> int:
    """The counter's value, which the caller takes: the next caller gets the one after it."""
    with counter.get_lock():
        taken = counter.value
        counter.value += 1
    return taken


class HistoryImport:
    """One run over the logs of a source, from the checkpoints on (``resume``) or from the start."""

    def __init__(
        self,
        source: LogSource,
        transport_factory: Callable[[], ClickHouseTransport],
        *,
        batch_size: int,
        sleep_time: float = 0.0,
        resume: bool = False,
        workers: int = 1,
        days: DaySpan = DaySpan(),
    ):
        ready_to_transform()
        self.source = source
        self.transport_factory = transport_factory
        self.batch_size = batch_size
        self.sleep_time = sleep_time
        self.resume = resume
        self.workers = workers
        self.days = days
        self.report = HistoryReport()

    def run(self, progress: ProgressReporter) -> HistoryReport:
        """
        Import every log; raises HistoryError or TransportError (or KeyboardInterrupt) with the checkpoints
        saved, after which ``resume`` continues.
        """
        started = time.monotonic()
        logs = logs_to_read(self.source, self.days)
        if not self.resume:
            forget(logs)
        done = lines_done(logs)
        todo = [(log_object, done.get(_log_hash(log_object), 0)) for log_object in logs]
        todo = [(log_object, lines) for log_object, lines in todo if lines >= 0]  # -1: finished before
        progress.start(
            "xAPI history",
            sum(log_object.size for log_object in logs),
            sum(log_object.size for log_object in logs) - sum(log_object.size for log_object, _ in todo),
            unit="bytes",
            detail=lambda: f"{self.report.statements:,} statements",
        )
        try:
            with transformation.sped_up(), _sigterm_interrupts():  # forked workers inherit both
                if self.workers > 1 and len(todo) > 1:
                    self._in_processes(todo, progress)
                else:
                    self._here(todo, progress)
        except DatabaseError as error:  # ERB's lookups failing: no event's fault, the run stops for a --resume
            raise HistoryError(database_failed(error)) from error
        finally:
            self.report.seconds = time.monotonic() - started
        progress.finish()
        return self.report

    def _here(self, todo: list[tuple[LogObject, int]], progress: ProgressReporter) -> None:
        importer = LogImporter(
            self.source, self.transport_factory(), batch_size=self.batch_size, sleep_time=self.sleep_time
        )

        def on_batch(bytes_read: int, statements: int) -> None:
            self.report.statements += statements
            progress.advance(bytes_read)

        for log_object, done in todo:
            self.report.add(importer.import_log(log_object, done, on_batch))

    def _in_processes(self, todo: list[tuple[LogObject, int]], progress: ProgressReporter) -> None:
        """
        Forked workers take the next log from a shared counter; progress and reports come back on a queue.
        (A queue of the logs to hand out would keep this process from exiting after a stop: its unread
        entries hold the queue's feeder thread, which exit waits for.)
        """
        context = multiprocessing.get_context("fork")
        next_log, results = context.Value("q", 0), context.Queue()
        workers = min(self.workers, len(todo))
        connections.close_all()  # each worker opens its own connection to the LMS database
        processes = [
            context.Process(target=self._work, args=(todo, next_log, results), daemon=True) for _ in range(workers)
        ]
        for process in processes:
            process.start()
        stopped, finished = "", 0
        try:
            while finished < len(processes):
                try:
                    kind, pid, payload = results.get(timeout=1.0)
                except queue.Empty:
                    if results.empty() and any(process.exitcode not in (0, None) for process in processes):
                        stopped = stopped or "a worker process died"
                        break
                    continue
                finished += kind == "done"
                if kind == "stopped" and not stopped:
                    stopped = payload
                    for process in processes:  # their checkpoints are saved after every batch
                        if process.pid != pid and process.is_alive():
                            process.terminate()
                self._receive(kind, payload, progress)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                process.join()
        if stopped:
            raise HistoryError(stopped)

    def _receive(self, kind: str, payload, progress: ProgressReporter) -> None:
        """A worker's message: a batch written (bytes read, statements) or a log's report."""
        if kind == "batch":
            bytes_read, statements = payload
            self.report.statements += statements
            progress.advance(bytes_read)
        elif kind == "log":
            self.report.add(payload)

    def _work(self, todo, next_log, results) -> None:
        """A forked worker: import logs until none is left; never let an exception escape unreported."""
        pid = os.getpid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stopped by the parent: at once, with nothing left to flush
        try:
            importer = LogImporter(
                self.source, self.transport_factory(), batch_size=self.batch_size, sleep_time=self.sleep_time
            )
            while (index := _take(next_log)) < len(todo):
                log_object, done = todo[index]
                report = importer.import_log(
                    log_object, done, lambda bytes_read, written: results.put(("batch", pid, (bytes_read, written)))
                )
                results.put(("log", pid, report))
        except (TransportError, HistoryError) as error:
            results.put(("stopped", pid, str(error)))
        except DatabaseError as error:
            results.put(("stopped", pid, database_failed(error)))
        except BaseException as error:
            results.put(("stopped", pid, f"{type(error).__name__}: {error}"))
        finally:
            connections.close_all()
            results.put(("done", pid, None))
