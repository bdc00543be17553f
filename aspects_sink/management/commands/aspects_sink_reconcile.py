"""Compare the LMS with ClickHouse, sink by sink, and with --repair send again what is missing or stale."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from aspects_sink import reconcile
from aspects_sink.management.commands.dump_data_to_clickhouse import VerbatimOutput
from aspects_sink.management.options import add_connection_arguments, transport_from_options
from aspects_sink.progress import SummaryColumn, format_table, progress_reporter
from aspects_sink.sinks.registry import UnknownSink, get_sink
from aspects_sink.transport import TransportError

SUMMARY_COLUMNS = (
    SummaryColumn("object", lambda r: r.sink, align_right=False),
    SummaryColumn("LMS rows", lambda r: f"{r.lms_rows:,}"),
    SummaryColumn("ClickHouse rows", lambda r: f"{r.clickhouse_rows:,}"),
    SummaryColumn("ranges", lambda r: f"{r.differing_ranges:,}/{r.ranges:,} differ"),
    SummaryColumn("missing", lambda r: f"{r.missing:,}"),
    SummaryColumn("stale", lambda r: f"{r.stale:,}"),
    SummaryColumn("extra", lambda r: f"{r.extra:,}"),
    SummaryColumn("in flight", lambda r: f"{r.in_flight:,}"),
    SummaryColumn("queued", lambda r: f"{r.queued:,}"),
    SummaryColumn("rows deleted", lambda r: f"{r.deleted_rows:,}"),
)


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_reconcile [--object NAME ...] [--repair]``."""

    help = (
        "Compare each sink's ClickHouse table (its current rows: after FINAL, or on Aspects' own tables each "
        "object's row of the greatest time_last_dumped) with the LMS, by ranges of object keys: row counts "
        "and a hash of the sent columns per range, then the differing objects. Reports objects missing from "
        "ClickHouse, extra (in ClickHouse only) and stale (different rows); objects with a pending outbox entry "
        "are in flight and left alone. --repair queues the missing and stale objects in the outbox (the drains "
        "send them) and deletes the extra rows. Memory stays flat; the LMS is only read, without locks. "
        "Exit code 1 when differences remain unrepaired."
    )

    def add_arguments(self, parser):
        parser.add_argument("--object", nargs="+", default=[], help="only these sinks (default: every enabled one)")
        parser.add_argument("--repair", action="store_true", help="queue missing and stale objects, delete extras")
        parser.add_argument(
            "--range-size",
            type=int,
            default=reconcile.DEFAULT_RANGE_SIZE,
            help=f"rows compared per range (default {reconcile.DEFAULT_RANGE_SIZE:,})",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
        add_connection_arguments(parser)

    def handle(self, *args, **options):
        if options["range_size"] < 1:
            raise CommandError("--range-size must be at least 1")
        try:
            for name in options["object"]:
                sink = get_sink(name)
                if not reconcile.comparable(sink):
                    raise CommandError(f"{name} cannot be compared: it has no rows of its own")
                if not sink.is_enabled():  # ClickHouse holds none of its objects on purpose; a repair would send none
                    raise CommandError(f"{name} is switched off ({sink.switches}): turn it on to compare it")
        except UnknownSink as error:
            raise CommandError(str(error)) from error
        transport = transport_from_options(options)
        progress = progress_reporter(VerbatimOutput(self.stdout), enabled=not options["no_progress"])
        try:
            results = reconcile.reconcile_all(
                transport,
                options["object"],
                repair=options["repair"],
                range_size=options["range_size"],
                progress=progress,
            )
        except (reconcile.ReconcileError, TransportError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(format_table(SUMMARY_COLUMNS, results))
        for result in results:
            for kind, examples in result.examples.items():
                if examples:
                    more = getattr(result, kind) - len(examples)
                    suffix = f" and {more:,} more" if more > 0 else ""
                    self.stdout.write(f"{result.sink} {kind}: {', '.join(examples)}{suffix}")
        unrepaired = sum(result.differences for result in results) if not options["repair"] else 0
        if unrepaired:
            self.stdout.write(f"{unrepaired:,} objects differ: run again with --repair to send them.")
            sys.exit(1)
