"""
Live-path benchmark: platform changes → outbox → one Celery worker → ClickHouse, measured end to end::

    python benchmarks/live_path.py                         # SQLite LMS, embedded broker
    python benchmarks/live_path.py --db mysql --broker redis://127.0.0.1:6379/9

Load: ``--writers`` LMS processes save learner profiles, one transaction per change (as a request would),
at ``--rate`` changes per second in total for ``--seconds``. Each change writes its own time into the
profile; ClickHouse rows carry the time their batch was built (``time_last_dumped``), which gives the
change-to-row latency of every row written. INSERTs are counted as distinct row versions (one per batch).
Then a CMS process publishes a 10,000-block course and the time until all its blocks are in ClickHouse is
measured. Figures are printed; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "devstack"))

from processes import Devstack  # noqa: E402 - devstack/ must be importable first

SETTINGS = {"ASPECTS_ENABLE_PII": True, "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 30}

WRITER = """
import random, time
from django.db import transaction
from common.djangoapps.student.models import UserProfile

profiles = list(UserProfile.objects.filter(user_id__gt=FIRST, user_id__lte=LAST))
interval = 1.0 / RATE
start = time.time()
changes = 0
while time.time() - start < SECONDS:
    profile = random.choice(profiles)
    with transaction.atomic():
        profile.goals = repr(time.time())
        profile.save(update_fields=["goals"])
    changes += 1
    ahead = start + changes * interval - time.time()
    if ahead > 0:
        time.sleep(ahead)
result = {"changes": changes, "seconds": time.time() - start}
"""

PUBLISH = """
import time
from xmodule.modulestore.course_builder import create_course
started = time.time()
key = create_course("Bench", "Big", "2026", blocks=10000)
result = {"course": str(key), "started": started, "publish_seconds": time.time() - started}
"""

PENDING = """
from aspects_sink.models import OutboxEntry
result = OutboxEntry.objects.filter(state="pending").count()
"""


def run_writers(devstack: Devstack, writers: int, rate: float, seconds: float, users: int) -> list[dict]:
    """Start the writer processes together and collect what each did."""
    share = users // writers
    processes = []
    for index in range(writers):
        code = (
            WRITER.replace("FIRST", str(index * share))
            .replace("LAST", str((index + 1) * share))
            .replace("RATE", str(rate / writers))
            .replace("SECONDS", str(seconds))
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "devstack" / "manage.py"), "lms", "shell", "-c",
                 code + "\nimport json\nprint('@@' + json.dumps(result))"],
                env=devstack.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
        )  # fmt: skip
    results = []
    for process in processes:
        output, _ = process.communicate(timeout=seconds + 300)
        results.append(json.loads(output[output.rfind("@@") + 2 :]))
    return results


def measure_changes(devstack: Devstack, options) -> dict:
    load_started = time.time()
    results = run_writers(devstack, options.writers, options.rate, options.seconds, options.users)
    changes = sum(result["changes"] for result in results)
    generated_seconds = max(result["seconds"] for result in results)
    devstack.wait_for(lambda: devstack.run_python("lms", PENDING) == 0, timeout=600, interval=1, what="empty outbox")
    client = devstack.clickhouse_client()
    row = client.query(
        """
        SELECT count(), uniqExact(version),
               quantile(0.5)(parseDateTime64BestEffort(time_last_dumped, 6) - toFloat64(goals)),
               quantile(0.95)(parseDateTime64BestEffort(time_last_dumped, 6) - toFloat64(goals)),
               max(toFloat64(goals)), max(toFloat64(parseDateTime64BestEffort(time_last_dumped, 6)))
        FROM user_profile WHERE goals != '' AND toFloat64(goals) >= {start:Float64}
        """,
        parameters={"start": load_started},
    ).result_rows[0]
    rows, inserts, p50, p95, _last_change, last_row = row
    return {
        "changes": changes,
        "changes_per_second": changes / generated_seconds,
        "rows": rows,
        "inserts": inserts,
        "inserts_per_second": inserts / (last_row - load_started),
        "rows_per_insert": rows / max(inserts, 1),
        "p50": float(p50),
        "p95": float(p95),
        "delivered_per_second": changes / (last_row - load_started),
    }


def measure_course(devstack: Devstack) -> dict:
    published = devstack.run_python("cms", PUBLISH)
    client = devstack.clickhouse_client()

    def blocks() -> int:
        return client.command(
            "SELECT count() FROM course_blocks WHERE course_key = {c:String}", parameters={"c": published["course"]}
        )

    devstack.wait_for(lambda: blocks() >= 10000, timeout=120, interval=0.05, what="10,000 blocks")
    return {"publish_seconds": published["publish_seconds"], "in_clickhouse_after": time.time() - published["started"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=600, help="changes per second, all writers together")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--broker", help="a Celery broker URL (default: the embedded filesystem broker)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".benchmarks" / "live")
    options = parser.parse_args()

    shutil.rmtree(options.state_dir, ignore_errors=True)
    devstack = Devstack(
        options.state_dir,
        settings=SETTINGS,
        broker_url=options.broker,
        database=options.db,
        mysql_database="aspects_bench_live" if options.db == "mysql" else None,
    )
    with devstack:
        devstack.manage("lms", "seed_devstack", "--users", str(options.users), "--courses", "1")
        devstack.start_worker()
        changes = measure_changes(devstack, options)
        course = measure_course(devstack)

    print(f"\nLive path, one worker, {options.db}, {options.writers} writers, {options.seconds:.0f}s of load")
    print(f"  changes made           {changes['changes']:>10,}  ({changes['changes_per_second']:,.0f}/s)")
    print(f"  delivered              {changes['delivered_per_second']:>10,.0f} changes/s (start of load → last row)")
    print(f"  user_profile INSERTs   {changes['inserts']:>10,}  ({changes['inserts_per_second']:.2f}/s, "
          f"{changes['rows_per_insert']:,.0f} rows each)")  # fmt: skip
    print(f"  change → row latency   p50 {changes['p50']:.2f}s   p95 {changes['p95']:.2f}s")
    print(f"  10,000-block course    published in {course['publish_seconds']:.2f}s, "
          f"all blocks in ClickHouse {course['in_clickhouse_after']:.2f}s after publish started")  # fmt: skip


if __name__ == "__main__":
    main()
