"""
xAPI route benchmark: tracking events emitted in LMS processes → xAPI statements in ClickHouse, with one
Celery worker::

    python benchmarks/xapi.py                                  # SQLite LMS, embedded broker, one LMS process
    python benchmarks/xapi.py --db mysql --emitters 2 --broker redis://127.0.0.1:6379/9

Load: learners of one course do rounds of realistic activity (enrollment, navigation, video, problem check,
subsection grade; ``devstack_tools.learner_activity``), each event emitted with ``eventtracking.tracker.emit``
in its own transaction, one request each, as fast as ``--emitters`` LMS processes can (SQLite takes one: it
runs one writing transaction at a time, so more would only queue). Two figures:

* live: from the first emit to the moment ClickHouse holds every statement (polled every 50 ms), the worker
  draining while events are emitted. It includes ERB's transformation in the emitting processes;
* backlog: the same load emitted while the worker is stopped, then drained by one worker, from the moment it
  is ready to the last statement in ClickHouse: what one worker can do.

CPU time per statement is shown for the emitting processes and the worker, since the machine may be shared.
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
import uuid
from dataclasses import dataclass
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

course = create_course("BenchX", "Xapi", RUN, "xAPI benchmark", blocks=60)
learners = [create_user(f"b{RUN}_{i}", f"b{RUN}_{i}@example.com", name=f"Bench {i}") for i in range(LEARNERS)]
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


@dataclass
class Load:
    """What the emitting processes did together."""

    emitted: int
    started: float
    finished: float
    cpu: float


class Bench:
    """One devstack, one course and its learners, and the ClickHouse count of the course's statements."""

    def __init__(self, devstack: Devstack, options):
        self.devstack = devstack
        self.options = options
        run = repr(uuid.uuid4().hex[:8])  # a MySQL LMS database outlives the state directory: new names each run
        setup = devstack.run_python("lms", SETUP.replace("LEARNERS", str(options.learners)).replace("RUN", run))
        self.course, self.usernames = setup["course"], setup["usernames"]
        self.rounds = max(options.events // (options.learners * 5), 1)
        self.client = devstack.clickhouse_client()

    def statements(self, *, final: bool = False) -> int:
        return self.client.command(
            f"SELECT count() FROM xapi.xapi_events_all{' FINAL' if final else ''}"
            " WHERE position(event, {c:String}) > 0",
            parameters={"c": self.course},
        )

    def emit(self) -> Load:
        """Start the emitting LMS processes together, each with its share of the learners."""
        emitters = self.options.emitters
        load = LOAD.replace("COURSE", repr(self.course)).replace("ROUNDS", str(self.rounds))
        command = [sys.executable, str(REPO_ROOT / "devstack" / "manage.py"), "lms", "shell", "-c"]
        processes = [
            subprocess.Popen(
                [*command, load.replace("USERNAMES", repr(self.usernames[index::emitters]))],
                env=self.devstack.env(),
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
        return Load(
            emitted=sum(result["emitted"] for result in results),
            started=min(result["started"] for result in results),
            finished=max(result["finished"] for result in results),
            cpu=sum(result["cpu"] for result in results),
        )

    def wait_for_statements(self, count: int) -> float:
        """Wait until ClickHouse holds ``count`` statements of the course; return when that was seen."""
        self.devstack.wait_for(
            lambda: self.statements() >= count, timeout=900, interval=0.05, what=f"{count:,} statements"
        )
        return time.time()

    def live(self) -> dict:
        worker = self.devstack.start_worker()
        worker_cpu = cpu_seconds(worker.pid)
        load = self.emit()
        arrived = self.wait_for_statements(load.emitted)
        figures = {"load": load, "arrived": arrived, "worker_cpu": cpu_seconds(worker.pid) - worker_cpu}
        self.devstack.stop_worker(worker)
        return figures

    def backlog(self, already: int) -> dict:
        load = self.emit()
        worker = self.devstack.start_worker()
        ready, worker_cpu = time.time(), cpu_seconds(worker.pid)
        arrived = self.wait_for_statements(already + load.emitted)
        return {"load": load, "ready": ready, "arrived": arrived, "worker_cpu": cpu_seconds(worker.pid) - worker_cpu}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(options, live: dict, backlog: dict, final: int, raw: int) -> None:
    load = live["load"]
    emit_seconds, total_seconds = load.finished - load.started, live["arrived"] - load.started
    drained = backlog["load"].emitted
    drain_seconds = backlog["arrived"] - backlog["ready"]
    print(f"\nxAPI route, one worker, {options.db}, {options.emitters} emitting LMS process(es)")
    print(
        f"  live: events emitted       {load.emitted:>8,} in {emit_seconds:.1f}s ({load.emitted / emit_seconds:,.0f}/s)"
    )
    print(
        f"  live: end to end           {load.emitted / total_seconds:>8,.0f} statements/s (first emit → last "
        f"statement in ClickHouse {total_seconds:.1f}s, {live['arrived'] - load.finished:.1f}s after the last emit)"
    )
    print(
        f"  backlog: one worker drains {drained / drain_seconds:>8,.0f} statements/s ({drained:,} in "
        f"{drain_seconds:.1f}s from the worker's start)"
    )
    print(
        f"  statements in ClickHouse   {final:>8,} after FINAL ({raw:,} rows before), of {2 * load.emitted:,} emitted"
    )
    print(
        f"  CPU per statement          emitting process {1000 * load.cpu / load.emitted:.2f} ms (ERB's "
        f"transformation, savepoint, INSERT, wake-up); worker {1000 * live['worker_cpu'] / load.emitted:.3f} ms "
        f"live, {1000 * backlog['worker_cpu'] / drained:.3f} ms draining the backlog"
    )
    print(f"  load average at the end    {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("  Aspects' published figure for its batched pipeline: over 50 events/s on a single worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events per phase (rounded to whole rounds)")
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--emitters", type=int, default=1, help="LMS processes emitting at once (MySQL only)")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--broker", help="a Celery broker URL (default: the embedded filesystem broker)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".benchmarks" / "xapi")
    options = parser.parse_args()
    if options.emitters > 1 and options.db != "mysql":
        parser.error("--emitters above 1 needs --db mysql: SQLite runs one writing transaction at a time")

    shutil.rmtree(options.state_dir, ignore_errors=True)
    devstack = Devstack(
        options.state_dir,
        settings=SETTINGS,
        broker_url=options.broker,
        database=options.db,
        mysql_database=MYSQL_DATABASE if options.db == "mysql" else None,
    )
    with devstack:
        bench = Bench(devstack, options)
        live = bench.live()
        backlog = bench.backlog(already=live["load"].emitted)
        report(options, live, backlog, bench.statements(final=True), bench.statements())


if __name__ == "__main__":
    main()
