"""
A day's outage on MariaDB: the claim query's plan with millions of queued statements, and how fast that
backlog drains once ClickHouse is back::

    DEVSTACK_DB=mysql python benchmarks/claim_plan.py                     # 3,000,000 statements
    DEVSTACK_DB=mysql python benchmarks/claim_plan.py --statements 300000 --drain-seconds 30

The statement queue (``XapiStatement``) and the outbox (``OutboxEntry``) are filled fast with
``INSERT … SELECT`` doubling in a database of this script's own (``aspects_claim_plan``, dropped at the end),
migrated as the plugin's migrations say. The script prints MariaDB's ``EXPLAIN`` of each claim query (an
index range in the claim order — no ``Using filesort`` — is O(batch)), the time of one claim at the head of
the backlog, and then drains the statement queue for ``--drain-seconds`` into an embedded ClickHouse
(chDB, in this process) and prints the rate: statements per second, with the backlog's size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "devstack"), str(REPO_ROOT)]
os.environ.setdefault("DEVSTACK_DB", "mysql")
os.environ["DEVSTACK_MYSQL_DB"] = os.environ.get("CLAIM_PLAN_DB", "aspects_claim_plan")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lms.envs.devstack")

STATEMENT = '{"id": "%s", "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"}, "actor": {"name": "x"}}'


def fill(cursor, table: str, columns: str, first_row: str, *, rows: int, copied: str = "") -> None:
    """``rows`` rows in ``table``: one, then doubled with INSERT … SELECT (of ``copied``) until there are enough."""
    cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({first_row})")
    count = 1
    while count < rows:
        take = min(count, rows - count)
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {copied or columns} FROM {table} LIMIT {take}")
        count += take
    cursor.execute(f"ANALYZE TABLE {table}")
    cursor.fetchall()


def explain(queryset) -> str:
    return queryset.explain()


def main() -> int:  # noqa: PLR0915 - one script, read top to bottom
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=3_000_000)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    options = parser.parse_args()

    import devstack_settings  # after the environment above is set
    import django

    if not devstack_settings.uses_mysql():
        parser.error("run with DEVSTACK_DB=mysql: the plan that matters is MariaDB's")
    devstack_settings.ensure_database_exists()
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from aspects_sink import delivery, outbox
    from aspects_sink.connection import get_transport
    from aspects_sink.models import LeasedEntry, XapiStatement

    call_command("migrate", "aspects_sink", verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE TABLE aspects_sink_xapistatement")
            cursor.execute("TRUNCATE TABLE aspects_sink_outboxentry")
            started = time.monotonic()
            now = timezone.now().strftime("%Y-%m-%d %H:%M:%S.%f")
            fill(
                cursor,
                "aspects_sink_xapistatement",
                # Statements already made (``event_name`` blank), as a history batch ClickHouse refused leaves them.
                "created, available_at, claim, attempts, waits, state, last_error, event_id, emission_time, statement, "
                "event_name",
                f"'{now}', '{now}', '', 0, 0, 'pending', '', UUID(), '{now}', '{STATEMENT % 'x'}', ''",
                rows=options.statements,
                copied="created, available_at, claim, attempts, waits, state, last_error, UUID(), emission_time, "
                "statement, event_name",
            )
            fill(
                cursor,
                "aspects_sink_outboxentry",
                "created, available_at, claim, attempts, waits, state, last_error, sink, object_id",
                f"'{now}', '{now}', '', 0, 0, 'pending', '', 'course_enrollment', '1'",
                rows=options.statements,
            )
            print(f"filled {options.statements:,} statements and outbox entries in {time.monotonic() - started:.0f}s")

        for name, queue_name in (("XapiStatement", "xapi_statements"), ("OutboxEntry", "course_enrollment")):
            queue = outbox.queue(queue_name)
            ready = queue.entries.filter(state=LeasedEntry.PENDING, available_at__lte=timezone.now())
            claim_read = ready.order_by("available_at", "id").values_list("id", "attempts")[: queue.batch_size]
            print(f"\nEXPLAIN of the claim read of {name} ({queue.entries.count():,} pending):")
            print(explain(claim_read))
            print("\nEXPLAIN of the old claim read (ORDER BY id), for comparison:")
            print(explain(ready.order_by("id").values_list("id", flat=True)[: queue.batch_size]))
            started = time.monotonic()
            claimed = queue.claim(queue.batch_size)
            print(f"one claim of {len(claimed):,} at the head of the backlog: {time.monotonic() - started:.3f}s")
            queue.release(claimed)

        with tempfile.TemporaryDirectory() as chdb:
            settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
                **settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
                "url": f"chdb://{chdb}",
            }
            call_command("aspects_sink_schema", verbosity=0)
            transport = get_transport()
            before = XapiStatement.objects.count()
            started = time.monotonic()
            while time.monotonic() - started < options.drain_seconds:
                if not delivery.drain("xapi_statements", transport, time_budget=10).delivered:
                    break
            seconds = time.monotonic() - started
            sent = before - XapiStatement.objects.count()
            print(
                f"\ndrained {sent:,} of {before:,} queued statements in {seconds:.1f}s: "
                f"{sent / seconds:,.0f} statements/s into ClickHouse (chDB in process), one worker"
            )
            print(f"ClickHouse holds {transport.command('SELECT count() FROM xapi.xapi_events_all'):,} rows")
    finally:
        connection.close()
        devstack_settings.drop_database(os.environ["DEVSTACK_MYSQL_DB"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
