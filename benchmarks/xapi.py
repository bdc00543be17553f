"""
xAPI route benchmark: tracking events emitted in an LMS process → xAPI statements in ClickHouse, end to end,
with one Celery worker::

    python benchmarks/xapi.py                                  # SQLite LMS, embedded broker, one LMS process
    python benchmarks/xapi.py --db mysql --emitters 2 --broker redis://127.0.0.1:6379/9

Load: learners of one course do rounds of realistic activity (enrollment, navigation, video, problem check,
subsection grade; ``devstack_tools.learner_activity``), each event emitted with ``eventtracking.tracker.emit``
in its own transaction, as one request each, as fast as ``--emitters`` LMS processes can (SQLite takes one:
its writers fail rather than wait when transactions overlap). Measured: from the first emit to the moment
ClickHouse holds every statement (polled every 50 ms), so the figure includes ERB's transformation in the
emitting processes, the statement queue, the debounced drains and the INSERTs, all on one machine.
Aspects' production guide reports "loads over 50 events/sec on a single worker" for its batched pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "devstack"))

from processes import Devstack  # noqa: E402 - devstack/ must be importable first

SETTINGS = {"ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 30}
MYSQL_DATABASE = "aspects_bench_xapi"

SETUP = """
from common.djangoapps.student.helpers import create_user
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from xmodule.modulestore.course_builder import create_course

course = create_course("BenchX", "Xapi", "2026", "xAPI benchmark", blocks=60)
learners = [create_user(f"bench{i}", f"bench{i}@example.com", name=f"Bench {i}") for i in range(LEARNERS)]
for learner in learners:
    ExternalId.add_new_user_id(learner, "xapi")  # as registration does; first events then create nothing
result = {"course": str(course), "usernames": [learner.username for learner in learners]}
"""

LOAD = """
import json, time
from devstack_tools import learner_activity
started, cpu = time.time(), time.process_time()
emitted = learner_activity.emit_rounds(COURSE, USERNAMES, rounds=ROUNDS)
cpu = time.process_time() - cpu
print("@@" + json.dumps({"emitted": emitted, "started": started, "finished": time.time(), "cpu": cpu}))
"""


def statements_in_clickhouse(client, course: str) -> int:
    return client.command(
        "SELECT count() FROM xapi.xapi_events_all WHERE position(event, {c:String}) > 0", parameters={"c": course}
    )


def emit(devstack: Devstack, course: str, usernames: list[str], rounds: int, emitters: int) -> dict:
    """Start the emitting LMS processes together, each with its share of the learners; combine what they did."""
    load = LOAD.replace("COURSE", repr(course)).replace("ROUNDS", str(rounds))
    command = [sys.executable, str(REPO_ROOT / "devstack" / "manage.py"), "lms", "shell", "-c"]
    processes = [
        subprocess.Popen(
            [*command, load.replace("USERNAMES", repr(usernames[index::emitters]))],
            env=devstack.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for index in range(emitters)
    ]
    results = []
    for process in processes:
        output, _ = process.communicate(timeout=3600)
        results.append(json.loads(output[output.rfind("@@") + 2 :]))
    return {
        "emitted": sum(result["emitted"] for result in results),
        "started": min(result["started"] for result in results),
        "finished": max(result["finished"] for result in results),
        "emitter_cpu": sum(result["cpu"] for result in results),
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(devstack: Devstack, options) -> dict:
    setup = devstack.run_python("lms", SETUP.replace("LEARNERS", str(options.learners)))
    rounds = max(options.events // (options.learners * 5), 1)
    client = devstack.clickhouse_client()
    worker_cpu = cpu_seconds(devstack.workers[0].pid)
    done = emit(devstack, setup["course"], setup["usernames"], rounds, options.emitters)
    devstack.wait_for(
        lambda: statements_in_clickhouse(client, setup["course"]) >= done["emitted"],
        timeout=600,
        interval=0.05,
        what=f"{done['emitted']:,} statements",
    )
    arrived = time.time()
    done["worker_cpu"] = cpu_seconds(devstack.workers[0].pid) - worker_cpu
    final = client.command(
        "SELECT count() FROM xapi.xapi_events_all FINAL WHERE position(event, {c:String}) > 0",
        parameters={"c": setup["course"]},
    )
    return {**done, "arrived": arrived, "final": final, "raw": statements_in_clickhouse(client, setup["course"])}


def drop_mysql_database() -> None:
    """Every run starts from an empty LMS database, as it does from an empty state directory."""
    import pymysql

    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{MYSQL_DATABASE}`")
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events to emit (rounded to whole rounds)")
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--emitters", type=int, default=1, help="LMS processes emitting at once (MySQL only)")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--broker", help="a Celery broker URL (default: the embedded filesystem broker)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".benchmarks" / "xapi")
    options = parser.parse_args()
    if options.emitters > 1 and options.db != "mysql":
        parser.error("--emitters above 1 needs --db mysql: SQLite fails overlapping writers instead of queueing them")

    shutil.rmtree(options.state_dir, ignore_errors=True)
    if options.db == "mysql":
        drop_mysql_database()
    devstack = Devstack(
        options.state_dir,
        settings=SETTINGS,
        broker_url=options.broker,
        database=options.db,
        mysql_database=MYSQL_DATABASE if options.db == "mysql" else None,
    )
    with devstack:
        devstack.start_worker()
        result = measure(devstack, options)

    emitted, started = result["emitted"], result["started"]
    emit_seconds, total_seconds = result["finished"] - started, result["arrived"] - started
    print(f"\nxAPI route, one worker, {options.db}, {options.emitters} emitting LMS process(es)")
    print(f"  events emitted            {emitted:>10,}  in {emit_seconds:.1f}s ({emitted / emit_seconds:,.0f}/s)")
    print(f"  statements in ClickHouse  {result['final']:>10,}  after FINAL ({result['raw']:,} rows before)")
    print(f"  end to end                {emitted / total_seconds:>10,.0f} statements/s  "
          f"(first emit → last statement in ClickHouse: {total_seconds:.1f}s, "
          f"{result['arrived'] - result['finished']:.1f}s after the last emit)")  # fmt: skip
    print(f"  CPU per statement         emitting process {1000 * result['emitter_cpu'] / emitted:.2f} ms "
          f"(ERB's transformation, the savepoint and INSERT, the wake-up), worker "
          f"{1000 * result['worker_cpu'] / emitted:.3f} ms (claim, read, one INSERT per batch, delete): one worker "
          f"alone drains about {emitted / max(result['worker_cpu'], 1e-9):,.0f} statements/s of CPU")  # fmt: skip
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("  Aspects' published figure for its batched pipeline: over 50 events/s on a single worker")


if __name__ == "__main__":
    main()
