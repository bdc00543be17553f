"""
``./manage.py lms|cms dump_data_to_clickhouse``: send existing objects to ClickHouse (backfill).

Run it to bootstrap Aspects, after an outage, and after a schema change. The options of
platform-plugin-aspects' command of the same name keep working; the engine is :mod:`aspects_sink.backfill`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError

from aspects_sink.backfill import BackfillError, BackfillOptions, SinkBackfill, SinkReport, dumpable
from aspects_sink.management.options import add_connection_arguments, transport_from_options
from aspects_sink.progress import SummaryColumn, format_table, progress_reporter
from aspects_sink.sinks.base import Sink
from aspects_sink.sinks.registry import UnknownSink, enabled_sinks, get_sink
from aspects_sink.transport import TransportError

CONNECTION_OPTIONS = ("url", "username", "password", "database", "timeout_secs")

SUMMARY_COLUMNS = (
    SummaryColumn("object", lambda report: report.sink, align_right=False),
    SummaryColumn("rows", lambda report: f"{report.rows:,}"),
    SummaryColumn("skipped", lambda report: f"{report.skipped:,}"),
    SummaryColumn("failed", lambda report: f"{report.failed:,}"),
    SummaryColumn("seconds", lambda report: f"{report.seconds:.1f}"),
    SummaryColumn("rows/s", lambda report: f"{report.rows_per_second:,.0f}"),
)
NOTE_COLUMN = SummaryColumn("note", lambda report: report.note, align_right=False)


class VerbatimOutput:
    """The command's stdout without the newline Django appends to every write: a bar redraws its own line."""

    def __init__(self, output: OutputWrapper):
        self.output = output

    def write(self, text: str) -> None:
        self.output.write(text, ending="")

    def flush(self) -> None:
        self.output.flush()

    def isatty(self) -> bool:
        return self.output.isatty()


class Command(BaseCommand):
    """``./manage.py lms dump_data_to_clickhouse [--object NAME] [--resume] [--workers N] ...``."""

    help = (
        "Send the objects of every enabled sink (or of --object) to ClickHouse, in batches of --batch_size "
        "with one INSERT per table per batch, read in primary-key order. Progress is checkpointed in the LMS "
        "database after every batch: --resume continues an interrupted run. Without --force, an object of any "
        "sink is skipped when its row, compared by digest, equals the latest one ClickHouse holds for it."
    )
    # Django's system checks (every app's models, URLs, templates: a tenth of a second of start-up) are not this
    # command's: before writing anything it checks what it needs, the options, the ids, ClickHouse and its tables.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--object", help="the sink to dump (default: every enabled sink; 'all' is the same)")
        parser.add_argument("--ids", metavar="KEY", nargs="*", help="primary keys of the objects to dump")
        parser.add_argument("--ids_to_skip", metavar="KEY", nargs="*", help="primary keys of objects NOT to dump")
        parser.add_argument("--start_pk", help="dump only objects whose primary key is greater than this")
        parser.add_argument(
            "--force", action="store_true", help="send every object, even those ClickHouse already holds unchanged"
        )
        parser.add_argument("--limit", type=int, help="stop after this many objects (per sink)")
        parser.add_argument("--batch_size", type=int, default=10_000, help="objects per batch (default 10000)")
        parser.add_argument(
            "--sleep_time",
            type=float,
            default=1.0,
            help="seconds to rest between batches, to spare the database (default 1; each worker's with --workers)",
        )
        parser.add_argument("--resume", action="store_true", help="continue the interrupted run of each sink")
        parser.add_argument("--dry-run", action="store_true", help="count what would be dumped; write nothing")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
        parser.add_argument("--workers", type=int, default=0, help="split each sink into N ranges for Celery workers")
        parser.add_argument(
            "--worker_timeout",
            type=float,
            default=60.0,
            help="with --workers: give up when no worker makes progress for this many seconds (default 60)",
        )
        add_connection_arguments(parser)

    def handle(self, *args, **options):
        backfill_options = self._backfill_options(options)
        sinks = self._sinks(options["object"], backfill_options)
        transport = transport_from_options(options)
        try:
            jobs = [SinkBackfill(sink, backfill_options, transport) for sink in sinks]
        except (BackfillError, TransportError) as error:
            raise CommandError(str(error)) from error
        if options["dry_run"]:
            reports = self._dry_run(jobs)
        else:
            progress = progress_reporter(VerbatimOutput(self.stdout), enabled=not options["no_progress"])
            reports = self._run(jobs, progress)
        self._finish(reports)

    # -- options ---------------------------------------------------------------------------------------

    def _backfill_options(self, options: dict) -> BackfillOptions:
        ids, ids_to_skip = tuple(options["ids"] or ()), tuple(options["ids_to_skip"] or ())
        limit, workers = options["limit"], options["workers"]
        conflicts = [
            (limit is not None and limit < 1, "--limit must be at least 1"),
            (
                limit is not None and options["force"],
                "--limit cannot be used with --force: every run would dump the same objects",
            ),
            (options["batch_size"] < 1, "--batch_size must be at least 1"),
            (options["sleep_time"] < 0, "--sleep_time cannot be negative"),
            (options["ids"] == [], "--ids needs at least one key (an empty list would dump every object)"),
            (workers < 0, "--workers cannot be negative"),
            (workers > 0 and options["worker_timeout"] <= 0, "--worker_timeout must be above 0"),
            (
                workers > 0 and options["sleep_time"] >= options["worker_timeout"],
                "--sleep_time must be shorter than --worker_timeout: a worker resting between batches longer than "
                "that looks stalled",
            ),
            (bool(ids) and bool(options["start_pk"]), "--ids and --start_pk cannot be used together"),
            (bool(ids) and options["resume"], "--ids cannot be resumed: leave out --resume"),
            (
                bool(options["start_pk"]) and options["resume"],
                "--resume continues where the run stopped: leave out --start_pk",
            ),
            (bool(ids) and workers > 0, "--ids names a few objects: leave out --workers"),
            (workers > 0 and limit is not None, "--limit cannot be used with --workers"),
            (
                workers > 0 and any(options.get(name) for name in CONNECTION_OPTIONS),
                "--workers: workers write to their own EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG; leave out --url etc.",
            ),
        ]
        for conflict, message in conflicts:
            if conflict:
                raise CommandError(message)
        return BackfillOptions(
            ids=ids,
            ids_to_skip=ids_to_skip,
            start_pk=options["start_pk"] or "",
            force=options["force"],
            limit=limit,
            batch_size=options["batch_size"],
            sleep_time=options["sleep_time"],
            resume=options["resume"],
            workers=workers,
            worker_timeout=options["worker_timeout"],
        )

    def _sinks(self, name: str | None, options: BackfillOptions) -> list[Sink]:
        """The sinks to dump: the one named, or every enabled dumpable sink in registry order."""
        if name in (None, "all"):
            if options.ids or options.ids_to_skip or options.start_pk:
                raise CommandError("--ids, --ids_to_skip and --start_pk are keys of one kind of object: add --object")
            return [sink for sink in enabled_sinks() if dumpable(sink)]
        try:
            sink = get_sink(name)
        except UnknownSink as error:
            raise CommandError(str(error)) from error
        if not dumpable(sink):
            raise CommandError(f"{name} cannot be dumped: it has no rows of its own ({sink.description})")
        if not sink.is_enabled():
            raise CommandError(f"{name} is switched off ({sink.switches}): turn it on to dump it")
        return [sink]

    # -- running -----------------------------------------------------------------------------------------

    def _dry_run(self, jobs: list[SinkBackfill]) -> list[SinkReport]:
        try:
            return [job.dry_run() for job in jobs]
        except TransportError as error:
            raise CommandError(str(error)) from error

    def _run(self, jobs: list[SinkBackfill], progress) -> list[SinkReport]:
        for job in jobs:  # every sink of the run is in its checkpoints before the first is dumped
            job.begin()
        reports = []
        for job in jobs:
            try:
                reports.append(job.run(progress))
            except (BackfillError, TransportError, DatabaseError, KeyboardInterrupt) as error:
                job.report.note = "stopped"
                self._print_summary([*reports, job.report])
                if isinstance(error, KeyboardInterrupt):
                    reason = "interrupted"
                elif isinstance(error, DatabaseError):
                    reason = f"the LMS database failed: {error}"
                else:
                    reason = str(error)
                # A run of chosen --ids keeps no checkpoints: there is nothing to resume.
                advice = "Run the same command again." if job.options.ids else "Run again with --resume to continue."
                raise CommandError(f"{job.name}: {reason}. {advice}") from error
        return reports

    def _finish(self, reports: list[SinkReport]) -> None:
        self._print_summary(reports)
        failed = [report for report in reports if report.failed]
        if failed:
            counts = ", ".join(f"{report.sink} {report.failed:,}" for report in failed)
            raise CommandError(f"some objects failed ({counts}); see the log for their ids and errors")

    def _print_summary(self, reports: list[SinkReport]) -> None:
        columns = (*SUMMARY_COLUMNS, NOTE_COLUMN) if any(report.note for report in reports) else SUMMARY_COLUMNS
        self.stdout.write(format_table(columns, reports))
        for report in reports:
            for error in report.errors:
                self.stdout.write(f"  {report.sink}: {error}")
