"""
``./manage.py lms aspects_sink_xapi_history (FILE... | s3://BUCKET/PREFIX | --source_provider P --source_config J)``:
tracking-log history into the raw xAPI table.

The engine is :mod:`aspects_sink.xapi.history` (ERB's parser and transformers, one INSERT per batch,
checkpoints in the LMS database for ``--resume``, forked workers); where logs come from is
:mod:`aspects_sink.xapi.sources`.
"""

from __future__ import annotations

import argparse
import datetime
from functools import partial
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from aspects_sink.management.commands.dump_data_to_clickhouse import VerbatimOutput
from aspects_sink.management.options import add_connection_arguments, transport_from_options
from aspects_sink.progress import SummaryColumn, format_table, progress_reporter
from aspects_sink.transport import TransportError
from aspects_sink.xapi.history import (
    DaySpan,
    HistoryError,
    HistoryImport,
    HistoryReport,
    logs_to_read,
    ready_to_transform,
    survey,
)
from aspects_sink.xapi.sources import (
    ERB_PROVIDERS,
    FileSource,
    LogSource,
    SourceError,
    source_from_argument,
    source_from_erb_options,
)


def _counted(count: int, noun: str) -> str:
    """``1 log``, ``2 logs``."""
    return f"{count:,} {noun}{'s' if count != 1 else ''}"


def _day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text}") from None


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_xapi_history SOURCE... [--resume] [--workers N] [--dry-run]``."""

    help = (
        "Transform tracking logs (JSON lines, gzip or not) into xAPI statements with event-routing-backends and "
        "insert them into the raw xAPI table, one INSERT per batch. Logs are files, the objects under "
        "s3://BUCKET/PREFIX (S3 or any S3-compatible store: --endpoint-url or AWS_ENDPOINT_URL), or what "
        "transform_tracking_logs' --source_provider/--source_config name. S3 credentials come from "
        "--source_config or boto3's usual places (AWS_* variables, ~/.aws, web identity, instance roles). "
        "After every batch the LMS database records how far each log got: --resume continues an interrupted "
        "run, from any pod. Statement ids are the live route's: importing a log twice, or one the live route "
        "already sent, adds no row once ClickHouse has merged. Exit code 1 when any event or log could not be "
        "imported (each is reported by name and line)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "sources", nargs="*", help="tracking-log files in the order to import them, or an s3:// URL"
        )
        parser.add_argument(
            "--source_provider", choices=ERB_PROVIDERS, help="as transform_tracking_logs: LOCAL, S3 or MINIO"
        )
        parser.add_argument(
            "--source_config",
            help='as transform_tracking_logs: JSON with "container" and "prefix"; for S3/MINIO also "key", '
            '"secret", "region", "host", "port", "secure"; for LOCAL "key" is the base directory',
        )
        parser.add_argument("--endpoint-url", help="an S3-compatible store for s3:// URLs (MinIO, Ceph, ...)")
        parser.add_argument(
            "--from-date", type=_day, help="only logs that may hold events of this day or later (YYYY-MM-DD)"
        )
        parser.add_argument(
            "--to-date",
            type=_day,
            help="only logs that may hold events of this day or earlier (YYYY-MM-DD): the log named the day after "
            "is read too, as logrotate names a log after the day it rotated",
        )
        parser.add_argument("--resume", action="store_true", help="continue after what the checkpoints record")
        parser.add_argument(
            "--dry-run", "--dry_run", action="store_true", help="list the logs, sizes, lines and events; write nothing"
        )
        parser.add_argument("--workers", type=int, default=1, help="logs imported side by side by N processes")
        parser.add_argument("--batch_size", type=int, default=10_000, help="statements per INSERT (default 10000)")
        parser.add_argument(
            "--sleep_between_batches_secs", type=float, default=0.0, help="rest between batches, to spare ClickHouse"
        )
        parser.add_argument(
            "--transformer_type", choices=["xapi"], default="xapi", help="accepted for transform_tracking_logs' sake"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
        add_connection_arguments(parser)

    def handle(self, *args, **options):
        if options["batch_size"] < 1 or options["workers"] < 1:
            raise CommandError("--batch_size and --workers must be at least 1")
        try:
            source = self._source(options)
            if options["dry_run"]:
                self._dry_run(source, DaySpan(options["from_date"], options["to_date"]))
                return
            job = HistoryImport(
                source,
                partial(transport_from_options, options),
                batch_size=options["batch_size"],
                sleep_time=options["sleep_between_batches_secs"],
                resume=options["resume"],
                workers=options["workers"],
                days=DaySpan(options["from_date"], options["to_date"]),
            )
            transport_from_options(options).close()  # a wrong URL or password fails before anything is read
            progress = progress_reporter(VerbatimOutput(self.stdout), enabled=not options["no_progress"])
            report = job.run(progress)
        except SourceError as error:
            raise CommandError(str(error)) from error
        except (TransportError, HistoryError, KeyboardInterrupt) as error:
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
            if "job" not in locals():  # it could not start: nothing to resume
                raise CommandError(reason) from error
            self._summary(job.report)
            raise CommandError(f"{reason}. Run again with --resume to continue.") from error
        self._summary(report)
        if not report.complete:
            raise CommandError(
                f"{_counted(report.failed, 'event')} could not be imported and "
                f"{_counted(len(report.unreadable), 'log')} could not be read "
                "to the end (listed above); the rest is imported."
            )

    @staticmethod
    def _source(options) -> LogSource:
        if options["source_provider"] or options["source_config"]:
            if options["sources"] or not (options["source_provider"] and options["source_config"]):
                raise CommandError("give --source_provider and --source_config together, and no other source")
            return source_from_erb_options(options["source_provider"], options["source_config"])
        arguments = options["sources"]
        if not arguments:
            raise CommandError("name the logs: files, an s3:// URL, or --source_provider and --source_config")
        if any(argument.startswith("s3://") for argument in arguments):
            if len(arguments) > 1:
                raise CommandError("an s3:// URL is the only source of a run")
            return source_from_argument(arguments[0], options["endpoint_url"])
        return FileSource([Path(argument) for argument in arguments])

    def _dry_run(self, source: LogSource, days: DaySpan) -> None:
        ready_to_transform()
        logs = logs_to_read(source, days)
        surveys = [survey(source, log_object) for log_object in logs]
        columns = (
            SummaryColumn("log", lambda row: row.log.name, align_right=False),
            SummaryColumn("day", lambda row: str(row.log.day)),
            SummaryColumn("bytes", lambda row: f"{row.log.size:,}"),
            SummaryColumn("lines", lambda row: f"{row.lines:,}"),
            SummaryColumn("events", lambda row: f"{row.events:,}"),
            SummaryColumn("error", lambda row: row.error, align_right=False),
        )
        self.stdout.write(format_table(columns, surveys))
        self.stdout.write(
            f"Dry run, nothing written: {len(logs):,} logs, {sum(log_object.size for log_object in logs):,} bytes, "
            f"{sum(row.lines for row in surveys):,} lines, {sum(row.events for row in surveys):,} events."
        )
        unreadable = sum(bool(row.error) for row in surveys)
        if unreadable:
            raise CommandError(f"{_counted(unreadable, 'log')} could not be read to the end (listed above)")

    def _summary(self, report: HistoryReport) -> None:
        for problem in report.problems:
            self.stderr.write(problem)
        for unreadable in report.unreadable:
            self.stderr.write(f"{unreadable} (the lines before it are imported)")
        self.stdout.write(
            f"{report.logs:,} logs, {report.bytes_read:,} bytes, {report.lines:,} lines read: "
            f"{report.statements:,} statements written ({report.statements_per_second:,.0f}/s over "
            f"{report.seconds:.1f}s), {report.skipped:,} lines skipped (not an xAPI event), {report.failed:,} events "
            "not imported"
            + (f", {len(report.unreadable):,} logs not read to the end" if report.unreadable else "")
            + (f", {report.queued:,} statements of refused batches queued for the drains" if report.queued else "")
            + (f", {report.retired:,} statements of retired learners left out" if report.retired else "")
            + f". Of the statements made, {report.assembled:,} were assembled from ERB's parts, {report.by_erb:,} "
            "made by ERB's transformers."
        )
