"""
A backfill of one sink from start to report: check the selection, start or resume its checkpoints, run
the ranges here or on Celery workers, and say what happened.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from aspects_sink.backfill import checkpoints, workers
from aspects_sink.backfill.checkpoints import RangeCheckpoint, RunParameters
from aspects_sink.backfill.runner import Tally, dump_range
from aspects_sink.backfill.source import BackfillError, BackfillSource
from aspects_sink.models import DumpCheckpoint
from aspects_sink.progress import ProgressReporter
from aspects_sink.sinks.base import Sink
from aspects_sink.transport import ClickHouseTransport


@dataclass(frozen=True)
class BackfillOptions:
    """The command's options (their conflicts are the command's to check)."""

    ids: tuple[str, ...] = ()
    ids_to_skip: tuple[str, ...] = ()
    start_pk: str = ""
    force: bool = False
    limit: int | None = None
    batch_size: int = 10_000
    sleep_time: float = 1.0
    resume: bool = False
    workers: int = 0
    worker_timeout: float = 60.0

    def selection(self) -> dict:
        """The options that decide which objects a run dumps; a resumed run keeps those of its first run."""
        return {"force": self.force, "limit": self.limit, "ids_to_skip": self.ids_to_skip, "start_pk": self.start_pk}

    def given_selection(self) -> dict:
        """The selection options set on the command line, that is, not left at their defaults."""
        defaults = BackfillOptions().selection()
        return {name: value for name, value in self.selection().items() if value != defaults[name]}


@dataclass
class SinkReport(Tally):
    """One line of the summary: what this run did with one sink, how long it took, and any remark."""

    sink: str = ""
    seconds: float = 0.0
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class SinkBackfill:
    """
    The backfill of one sink. Construction checks everything that can be checked before anything is
    written (malformed or missing ids, a resume that does not match its checkpoints), so a run over
    several sinks fails before its first insert rather than halfway.
    """

    def __init__(self, sink: Sink, options: BackfillOptions, transport: ClickHouseTransport):
        self.options = options
        self.transport = transport
        self.report = SinkReport(sink=sink.name)
        self.previous = checkpoints.latest(sink.name) if options.resume else []
        self.parameters = self._run_parameters(sink.name)
        self.source = BackfillSource(
            sink,
            ids=options.ids,
            ids_to_skip=self.parameters.ids_to_skip,
            only_changed=not self.parameters.force,
        )
        if self.parameters.start_pk:
            self.source.parse_keys([self.parameters.start_pk])
        missing = self.source.missing_ids() if options.ids else []
        if missing:
            raise BackfillError(f"no {sink.name} with id {', '.join(missing)}")

    @property
    def name(self) -> str:
        return self.source.name

    def _run_parameters(self, sink_name: str) -> RunParameters:
        """
        What the checkpoints keep: the selection (this command's, or on --resume the interrupted run's),
        where the rows go, and the batch settings that Celery workers read.
        """
        config = self.transport.config
        target = f"{config.safe_url} database {config.database}"
        selection = self.options.selection()
        if self.previous:
            stored = RunParameters.from_json(self.previous[0].parameters)
            given = self.options.given_selection()
            conflicts = [name for name, value in given.items() if getattr(stored, name) != value]
            if conflicts:
                raise BackfillError(
                    f"cannot resume {sink_name}: its run was started with other {', '.join(conflicts)}; "
                    "resume with the same options, or start a new run without --resume"
                )
            if stored.target != target:
                raise BackfillError(f"cannot resume {sink_name}: its run wrote to {stored.target}, not {target}")
            selection = stored.selection()
        return RunParameters(
            **selection, target=target, batch_size=self.options.batch_size, sleep_time=self.options.sleep_time
        )

    # -- what is left to do ----------------------------------------------------------------------------

    def _new_ranges(self) -> list[RangeCheckpoint]:
        """A new run's ranges: one, or one per worker; in memory only for --ids, which cannot be resumed."""
        if self.options.ids:
            row = DumpCheckpoint(sink=self.name, parameters=self.parameters.to_json())
            return [RangeCheckpoint(row, self.source, persist=False)]
        start = self.parameters.start_pk
        bounds = workers.split(self.source, start, self.options.workers) if self.options.workers else [(start, "")]
        return [RangeCheckpoint(row, self.source) for row in checkpoints.begin(self.name, self.parameters, bounds)]

    def _resumed_ranges(self, *, persist: bool = True) -> list[RangeCheckpoint]:
        return [RangeCheckpoint(row, self.source, persist=persist) for row in checkpoints.unfinished(self.previous)]

    def _progress_totals(self, ranges: Sequence[RangeCheckpoint], *, count: bool = True) -> tuple[int, int]:
        """
        Objects in all and objects dealt with before this run (when resuming), for the progress bar. ``count``
        False leaves the objects to do uncounted (0): a COUNT of a million joined rows, that nobody would see.
        """
        done = sum(checkpoint.done for checkpoint in ranges)
        if not count:
            return done, done
        left = sum(self.source.count(checkpoint.after, checkpoint.up_to) for checkpoint in ranges)
        limit = self.parameters.limit
        if limit is not None and self.source.change_tracking is None:
            left = min(left, max(limit - done, 0))
        return done + left, done

    # -- running -----------------------------------------------------------------------------------------

    def begin(self) -> None:
        """
        Record that this run includes the sink, before the run's first sink is dumped: one range from the start
        (:meth:`run` replaces it with the run's own ranges when it gets to the sink). A run of several sinks
        stopped or killed in one of them thus leaves checkpoints for the sinks after it, which ``--resume``
        dumps, instead of finding an earlier, finished run's and calling them "already complete".
        """
        if not self.options.resume and not self.options.ids:
            checkpoints.begin(self.name, self.parameters, [(self.parameters.start_pk, "")])

    def dry_run(self) -> SinkReport:
        """Count what a run would dump, reading keys only; nothing is written anywhere."""
        self.source.prepare(self.transport)
        if self.options.resume:
            ranges = self._resumed_ranges(persist=False)
        else:
            whole = DumpCheckpoint(sink=self.name, range_start=self.parameters.start_pk)
            ranges = [RangeCheckpoint(whole, self.source, persist=False)]
        limit = self.parameters.limit
        for checkpoint in ranges:
            remaining = None if limit is None else max(limit - checkpoint.row.rows - checkpoint.row.failed, 0)
            pages = self.source.pages(
                self.options.batch_size, checkpoint.after, checkpoint.up_to, limit=remaining, with_rows=False
            )
            for page in pages:
                self.report.rows += len(page.keys)
                self.report.skipped += page.skipped
        self.report.note = "dry run: nothing written"
        return self.report

    def run(self, progress: ProgressReporter) -> SinkReport:
        """
        Dump the sink's selection and return the report. When this raises (ClickHouse unavailable, Ctrl-C,
        unresponsive workers) ``self.report`` still counts every batch ClickHouse acknowledged.
        """
        if self.options.resume and not checkpoints.unfinished(self.previous):
            self.report.note = "already complete" if self.previous else "no run to resume"
            return self.report
        started = time.monotonic()
        try:
            self.source.prepare(self.transport)
            ranges = self._resumed_ranges() if self.options.resume else self._new_ranges()
            total, done = self._progress_totals(ranges, count=progress.shows_total)
            progress.start(self.name, total, done)
            if self.options.workers:
                self._run_on_workers(ranges, progress)
            else:
                self._run_here(ranges, progress)
            progress.finish()
        finally:
            self.report.seconds = time.monotonic() - started
        return self.report

    def _run_here(self, ranges: Sequence[RangeCheckpoint], progress: ProgressReporter) -> None:
        for checkpoint in ranges:
            checkpoint.start()
            try:
                dump_range(
                    self.source,
                    checkpoint,
                    self.transport,
                    batch_size=self.options.batch_size,
                    sleep_time=self.options.sleep_time,
                    limit=self.parameters.limit,
                    on_batch=progress.advance,
                    tally=self.report,
                )
            except BaseException as error:  # Ctrl-C too: the range is left for --resume
                checkpoint.stop(f"{type(error).__name__}: {error}")
                raise

    def _run_on_workers(self, ranges: Sequence[RangeCheckpoint], progress: ProgressReporter) -> None:
        rows = [checkpoint.row for checkpoint in ranges]
        before = {row.id: (row.rows, row.skipped, row.failed) for row in rows}
        for row in rows:  # what workers read; a resumed run keeps its selection, and goes as fast as this one says
            row.parameters = self.parameters.to_json()
        workers.dispatch(rows)
        try:
            workers.wait(rows, progress, self.options.worker_timeout)
        except KeyboardInterrupt:  # the workers stop at their next batch; --resume continues
            checkpoints.give_up(list(before), "interrupted (Ctrl-C)")
            raise
        finally:
            finished = list(DumpCheckpoint.objects.filter(id__in=before).order_by("id"))
            for row in finished:
                rows_before, skipped_before, failed_before = before[row.id]
                self.report.add(Tally(row.rows - rows_before, row.skipped - skipped_before, row.failed - failed_before))
                if row.last_error:
                    self.report.errors.append(row.last_error)
        stopped = [row for row in finished if row.state == DumpCheckpoint.STOPPED]
        if stopped:
            raise BackfillError(f"{len(stopped)} of {len(finished)} ranges stopped: {stopped[0].last_error}")
