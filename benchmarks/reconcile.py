"""
Reconciliation benchmark: ``aspects_sink_reconcile`` next to ``dump_data_to_clickhouse`` on the same table::

    python benchmarks/reconcile.py                       # 100,000 rows, SQLite
    python benchmarks/reconcile.py --users 1000000       # 1,000,000 rows
    python benchmarks/reconcile.py --db mysql            # MariaDB on 127.0.0.1:3306

Each command runs as its own process, as an operator would run it, with the interpreter running this script; the
figures are end to end (process start to exit) and the peak RSS is that process's own. The devstack (and its
seeded data) is the backfill benchmark's, under ``.benchmarks/state-<db>-<size>``. Three runs per object: the
backfill, a reconciliation that finds nothing, and, after ``--damage`` rows were deleted or altered by hand in
ClickHouse, a reconciliation with ``--repair`` that finds them and queues them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "devstack"))

from backfill import WORK_DIR, Command, Run, lms_count, measure, seed  # noqa: E402 - paths first
from processes import DEVSTACK_DIR, Devstack  # noqa: E402

OBJECTS = (("user_profile", "users", "id"), ("course_enrollment", "enrollments", "id"))


def manage(devstack: Devstack, *arguments: str) -> Command:
    return Command([sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", *arguments], devstack.env(), REPO_ROOT)


def run(arguments: argparse.Namespace) -> list[Run]:
    size = arguments.users
    state = WORK_DIR / f"state-{arguments.db}-{size}"
    mysql_database = f"aspects_benchmark_{size}" if arguments.db == "mysql" else None
    devstack = Devstack(
        state, settings={"ASPECTS_ENABLE_PII": True}, database=arguments.db, mysql_database=mysql_database
    )
    devstack.start()
    log = state / "reconcile-benchmark.log"
    runs = []
    try:
        seed(devstack, courses=20, blocks=5, users=size, enrollments=size)
        clickhouse = devstack.clickhouse_client()
        for sink, model, key in OBJECTS:
            rows = lms_count(devstack, model)
            clickhouse.command(f"TRUNCATE TABLE {sink}")
            dump = ["dump_data_to_clickhouse", "--object", sink, "--batch_size", "10000", "--sleep_time", "0"]
            runs.append(measure("backfill", f"{sink} {rows:,}", rows, manage(devstack, *dump, "--no-progress"), log))
            check = ["aspects_sink_reconcile", "--object", sink, "--no-progress"]
            runs.append(measure("reconcile (equal)", f"{sink} {rows:,}", rows, manage(devstack, *check), log))
            damage = arguments.damage // 2
            sync = {"mutations_sync": 1}
            clickhouse.command(f"ALTER TABLE {sink} DELETE WHERE {key} % {rows // damage} = 1", settings=sync)
            clickhouse.command(
                f"ALTER TABLE {sink} UPDATE mode = 'honor' WHERE {key} % {rows // damage} = 2"
                if sink == "course_enrollment"
                else f"ALTER TABLE {sink} UPDATE city = 'Atlantis' WHERE {key} % {rows // damage} = 2",
                settings=sync,
            )
            repair = manage(devstack, *check, "--repair")
            runs.append(measure(f"reconcile --repair ({arguments.damage})", f"{sink} {rows:,}", rows, repair, log))
            devstack.manage("lms", "aspects_sink_sweep", "--drain", timeout=3600)  # send what the repair queued
            output = devstack.manage("lms", "aspects_sink_reconcile", "--object", sink, "--no-progress", check=False)
            print(output.stdout.splitlines()[2] if output.stdout else output.stderr[-400:])
    finally:
        devstack.stop()
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="users, profiles and enrollments")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--damage", type=int, default=200, help="rows deleted or altered by hand before --repair")
    arguments = parser.parse_args(argv)
    runs = run(arguments)
    print(f"\n{'run':<28} {'table':<28} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9}")
    for each in runs:
        print(
            f"{each.plugin:<28} {each.what:<28} {each.seconds:8.1f} {each.rows_per_second:>10,.0f} "
            f"{each.peak_rss_mb:>6.0f} MB"
        )
    print(
        f"\nPython {sys.version.split()[0]}, {arguments.db}; "
        "each line above the table: a check after the repair was drained"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
