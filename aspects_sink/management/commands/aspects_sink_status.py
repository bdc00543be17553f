"""Show how far behind ClickHouse is and what is stuck; exit 0, 1, 2 or 3 (ok, warning, critical, unknown)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand
from django.utils import timezone

from aspects_sink import status
from aspects_sink.progress import SummaryColumn, format_duration, format_table

# Nagios' (and many probes') code for a check that could not tell.
UNKNOWN = 3


def _ago(value) -> str:
    if value is None:
        return "never"
    return f"{format_duration((timezone.now() - value).total_seconds())} ago"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_status [--json]``."""

    help = (
        "Show the plugin's state: per sink and for the xAPI queue the pending entries, the age of the oldest, "
        "entries being retried, dead letters by reason, the last successful INSERT, the last error and whether a "
        "configuration error paused the sink; whether ClickHouse answers and its version; retirement mutations "
        "pending or failed; when the periodic sweep (Celery beat) last ran. Read-only: it schedules nothing. "
        "Exit code 0 ok, 1 warning, 2 critical (thresholds: ASPECTS_SINK_STATUS_THRESHOLDS), 3 when the status "
        "cannot be read (the LMS database failing), so a Kubernetes "
        "probe, cron or Nagios can run it. --json prints the stable layout documented in the README."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON (stable layout, see the README)")

    def handle(self, *args, **options):
        try:
            found = status.collect()
        except Exception as error:  # a probe reads the exit code: 3 is "unknown", not a "warning" traceback
            self.stdout.write(
                f"UNKNOWN: the status could not be read: {type(error).__name__}: {status.redact(str(error))}"
            )
            sys.exit(UNKNOWN)
        if options["json"]:
            self.stdout.write(json.dumps(found.as_json(), indent=2))
        else:
            self.stdout.write(self.render(found))
        # A probe reads the exit code: 0 ok, 1 warning, 2 critical.
        sys.exit(int(found.level))

    @staticmethod
    def render(found: status.SystemStatus) -> str:
        columns = [
            SummaryColumn("queue", lambda q: q.name, align_right=False),
            SummaryColumn("state", lambda q: str(found.queue_level(q.name)), align_right=False),
            SummaryColumn("pending", lambda q: f"{q.pending:,}"),
            SummaryColumn("oldest", lambda q: _age(q.oldest_pending_age_seconds)),
            SummaryColumn("retrying", lambda q: f"{q.retrying:,}"),
            SummaryColumn("dead", lambda q: f"{q.dead_letters:,}"),
            SummaryColumn("last insert", lambda q: _ago(q.last_success_at)),
            SummaryColumn(
                "last error",
                lambda q: f"{q.last_error.error_class} {_ago(q.last_error.at)}" if q.last_error else "-",
                align_right=False,
            ),
            SummaryColumn("paused", lambda q: "PAUSED" if q.paused else "no", align_right=False),
        ]
        clickhouse = found.clickhouse
        unread = "could not be read: see the findings" if clickhouse.reachable else "ClickHouse unreachable"
        lines = [
            f"aspects-sink: {found.level.name} at {found.checked_at:%Y-%m-%d %H:%M:%S %Z}",
            f"ClickHouse: {'up, version ' + str(clickhouse.version) if clickhouse.reachable else 'UNREACHABLE'}",
            "",
            format_table(columns, found.queues),
            "",
            "Retirement mutations: "
            + (
                f"unknown ({unread})"
                if found.mutations is None
                else f"{found.mutations_pending} pending, {found.mutations_failed} failed"
            ),
            "Periodic sweep (Celery beat): "
            + (f"last ran {_ago(found.sweep.last_run_at)}" if found.sweep.last_run_at else "never ran"),
        ]
        if found.findings:
            lines += ["", "Findings:", *(f"  {finding}" for finding in found.findings)]
        return "\n".join(lines)
