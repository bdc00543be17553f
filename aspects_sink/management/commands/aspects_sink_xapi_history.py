"""
``./manage.py lms aspects_sink_xapi_history FILE...``: tracking-log history into the raw xAPI table.

The engine is :mod:`aspects_sink.xapi.history`: ERB's parser and transformers, one INSERT per batch, a
checkpoint file for ``--resume``.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from aspects_sink.management.commands.dump_data_to_clickhouse import VerbatimOutput
from aspects_sink.management.options import add_connection_arguments, transport_from_options
from aspects_sink.progress import progress_reporter
from aspects_sink.transport import TransportError
from aspects_sink.xapi.history import HistoryCheckpoint, HistoryError, HistoryImport, HistoryReport


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_xapi_history FILE... [--resume] [--checkpoint PATH] [--batch_size N]``."""

    help = (
        "Transform tracking-log files (JSON lines, gzip or not) into xAPI statements with event-routing-backends "
        "and insert them into the raw xAPI table, one INSERT per batch. After every batch the checkpoint file "
        "records how far each file got: --resume continues an interrupted run. Importing a log twice adds no "
        "row once ClickHouse has merged (statement ids are deterministic)."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path, help="tracking log files, in the order to import them")
        parser.add_argument("--resume", action="store_true", help="continue after what the checkpoint records")
        parser.add_argument(
            "--checkpoint",
            type=Path,
            default=Path("aspects_sink_xapi_history.json"),
            help="where progress is recorded (default: aspects_sink_xapi_history.json in the current directory)",
        )
        parser.add_argument("--batch_size", type=int, default=10_000, help="statements per INSERT (default 10000)")
        parser.add_argument(
            "--sleep_between_batches_secs", type=float, default=0.0, help="rest between batches, to spare ClickHouse"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
        add_connection_arguments(parser)

    def handle(self, *args, **options):
        missing = [str(path) for path in options["files"] if not path.is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}")
        if options["batch_size"] < 1:
            raise CommandError("--batch_size must be at least 1")
        transport = transport_from_options(options)
        try:
            checkpoint = (
                HistoryCheckpoint.load(options["checkpoint"])
                if options["resume"]
                else HistoryCheckpoint(options["checkpoint"])
            )
            job = HistoryImport(
                options["files"],
                transport,
                checkpoint,
                batch_size=options["batch_size"],
                sleep_time=options["sleep_between_batches_secs"],
            )
        except HistoryError as error:
            raise CommandError(str(error)) from error
        progress = progress_reporter(VerbatimOutput(self.stdout), enabled=not options["no_progress"])
        try:
            report = job.run(progress)
        except (TransportError, KeyboardInterrupt) as error:
            self._summary(job.report)
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
            raise CommandError(f"{reason}. Run again with --resume to continue.") from error
        self._summary(report)

    def _summary(self, report: HistoryReport) -> None:
        self.stdout.write(
            f"{report.lines:,} lines read: {report.statements:,} statements written "
            f"({report.statements_per_second:,.0f}/s over {report.seconds:.1f}s), {report.skipped:,} lines skipped "
            f"(not an xAPI event), {report.failed:,} events not transformable (see the log)"
            + (f", {report.queued:,} statements of refused batches queued for the drains" if report.queued else "")
            + "."
        )
