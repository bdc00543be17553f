"""
xAPI benchmark: tracking events emitted in LMS processes → xAPI statements in ClickHouse, with one Celery
worker, for aspects-sink's route and, side by side in the same run, the pipeline Aspects ships without it
(event-routing-backends batching to a Ralph LRS, ``stock_xapi``)::

    python benchmarks/xapi.py                      # MariaDB LMS, Redis broker and cache, both pipelines
    python benchmarks/xapi.py --db sqlite --redis none --no-stock   # aspects-sink alone, nothing to run

Load: learners of one course do rounds of realistic activity (enrollment, navigation, video, problem check,
subsection grade; ``devstack_tools.learner_activity``), each event emitted with ``eventtracking.tracker.emit``
in its own transaction, one request each, as fast as ``--emitters`` LMS processes can (SQLite takes one: it
runs one writing transaction at a time, so more would only queue). Each pipeline gets a course of its own and
two phases:

* live: from the first emit to the moment ClickHouse holds every statement (polled every 50 ms), the worker
  working while events are emitted;
* backlog: the same load emitted while the worker is stopped, then worked off by one worker, from the moment
  it is ready to the last statement in ClickHouse: what one worker can do.

A pipeline that stops delivering before every statement arrived (ERB flushes its batch only when another
event arrives) is measured to its last delivery, and what it left behind is shown. CPU time per statement is
shown for each process, since the machine may be shared. Aspects' production guide reports "loads over 50
events/sec on a single worker" for its batched pipeline.
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
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "devstack"))

from devstack_settings import drop_database  # noqa: E402 - devstack/ must be importable first
from processes import Devstack  # noqa: E402
from redis import Redis  # noqa: E402
from stock_xapi import StockPipeline, redis_cache  # noqa: E402

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
import cProfile, json, time
from devstack_tools import learner_activity
profile = cProfile.Profile(time.process_time) if PROFILE else None
started, cpu = time.time(), time.process_time()
if profile:
    profile.enable()
emitted = learner_activity.emit_rounds(COURSE, USERNAMES, rounds=ROUNDS)
if profile:
    profile.disable()
    profile.dump_stats(PROFILE)
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

    @property
    def rate(self) -> float:
        return self.emitted / (self.finished - self.started)


@dataclass
class Phase:
    """One phase of one pipeline: the load, when statements stopped arriving, how many, and CPU spent."""

    load: Load
    began: float  # the first emit (live) or the worker ready (backlog)
    arrived: int
    last_arrival: float
    worker_cpu: float
    other_cpu: float

    @property
    def seconds(self) -> float:
        return self.last_arrival - self.began

    @property
    def rate(self) -> float:
        return self.arrived / self.seconds


@dataclass
class Result:
    """Both phases of one pipeline, its statements after FINAL, and notes such as what it still owes."""

    name: str
    live: Phase
    backlog: Phase
    final: int = 0
    notes: list[str] = field(default_factory=list)


class Bench:
    """One pipeline's course and learners on the devstack, and the ClickHouse count of the course's statements."""

    def __init__(self, devstack: Devstack, options, other_process: int | None = None):
        self.devstack = devstack
        self.options = options
        self.other_process = other_process  # a process of the pipeline's own (Ralph), for its CPU time
        run = repr(uuid.uuid4().hex[:8])  # each pipeline gets a course and learners of its own
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

    def emit(self, phase: str) -> Load:
        """
        Start the emitting LMS processes together, each with its share of the learners; with ``--profile``, each
        writes its cProfile statistics to ``<profile>/<pipeline>-<phase>-<n>.prof``.
        """
        emitters = self.options.emitters
        load = LOAD.replace("COURSE", repr(self.course)).replace("ROUNDS", str(self.rounds))
        command = [sys.executable, str(REPO_ROOT / "devstack" / "manage.py"), "lms", "shell", "-c"]
        profiles = [self.profile_path(phase, index) for index in range(emitters)]
        processes = [
            subprocess.Popen(
                [
                    *command,
                    load.replace("USERNAMES", repr(self.usernames[index::emitters])).replace(
                        "PROFILE", repr(profiles[index])
                    ),
                ],
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

    def profile_path(self, phase: str, index: int) -> str | None:
        if not self.options.profile:
            return None
        self.options.profile.mkdir(parents=True, exist_ok=True)
        pipeline = "stock" if self.other_process else "ours"
        return str(self.options.profile.resolve() / f"{pipeline}-{phase}-{index}.prof")

    def wait_for_statements(self, count: int, cpu: CpuMeter) -> tuple[int, float]:
        """
        Poll ClickHouse every 50 ms until it holds ``count`` statements of the course, or until for ``--stall``
        seconds none has arrived and the pipeline's processes have been idle (a pipeline may work for a long
        time before its first delivery); return how many arrived and when the last of them was seen.
        """
        arrived, last_arrival = self.statements(), time.time()
        last_busy, sampled, cpu_then = time.time(), time.time(), sum(cpu.spent())
        while arrived < count and time.time() - max(last_arrival, last_busy) < self.options.stall:
            time.sleep(0.05)
            now = self.statements()
            if now > arrived:
                arrived, last_arrival = now, time.time()
            if time.time() - sampled >= 1:  # busy: over a tenth of a CPU in the last second
                if sum(cpu.spent()) - cpu_then > 0.1 * (time.time() - sampled):
                    last_busy = time.time()
                sampled, cpu_then = time.time(), sum(cpu.spent())
        return arrived, last_arrival

    def live(self) -> Phase:
        worker = self.devstack.start_worker()
        cpu = CpuMeter(worker.pid, self.other_process)
        load = self.emit("live")
        arrived, last_arrival = self.wait_for_statements(load.emitted, cpu)
        phase = Phase(load, load.started, arrived, last_arrival, *cpu.spent())
        self.devstack.stop_worker(worker)
        return phase

    def backlog(self, already: int) -> Phase:
        load = self.emit("backlog")
        worker = self.devstack.start_worker()
        ready, cpu = time.time(), CpuMeter(worker.pid, self.other_process)
        arrived, last_arrival = self.wait_for_statements(already + load.emitted, cpu)
        return Phase(load, ready, arrived - already, last_arrival, *cpu.spent())

    def run(self, name: str) -> Result:
        live = self.live()
        backlog = self.backlog(already=live.arrived)
        return Result(name, live, backlog, final=self.statements(final=True))


class CpuMeter:
    """CPU time the worker and the pipeline's other process (if any) spend from now on."""

    def __init__(self, worker: int, other: int | None):
        self.pids = (worker, other)
        self.start = self._now()

    def _now(self) -> tuple[float, float]:
        return tuple(cpu_seconds(pid) if pid else 0.0 for pid in self.pids)

    def spent(self) -> tuple[float, float]:
        return tuple(now - start for now, start in zip(self._now(), self.start))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(options, results: list[Result]) -> None:
    """The pipelines side by side, one column each."""
    rows = {
        "live: events emitted/s": lambda r: f"{r.live.load.rate:,.0f}",
        "live: end to end, statements/s": lambda r: f"{r.live.rate:,.0f}",
        "live: last statement after last emit": lambda r: f"{r.live.last_arrival - r.live.load.finished:.1f} s",
        "live: statements arrived": lambda r: f"{r.live.arrived:,} of {r.live.load.emitted:,}",
        "backlog: one worker, statements/s": lambda r: f"{r.backlog.rate:,.0f}",
        "backlog: statements arrived": lambda r: f"{r.backlog.arrived:,} of {r.backlog.load.emitted:,}",
        "after FINAL (both phases)": lambda r: f"{r.final:,}",
        "CPU/statement: emitting process": lambda r: f"{1000 * r.live.load.cpu / r.live.load.emitted:.2f} ms",
        "CPU/statement: worker, live": lambda r: f"{1000 * r.live.worker_cpu / max(r.live.arrived, 1):.2f} ms",
        "CPU/statement: worker, backlog": lambda r: f"{1000 * r.backlog.worker_cpu / max(r.backlog.arrived, 1):.2f} ms",
        "CPU/statement: LRS (Ralph), live": lambda r: (
            f"{1000 * r.live.other_cpu / max(r.live.arrived, 1):.2f} ms" if r.live.other_cpu else "-"
        ),
    }
    services = "embedded broker, file cache" if options.redis == "none" else "Redis broker and cache"
    print(f"\nxAPI to ClickHouse, one Celery worker, {options.db}, {services}, {options.emitters} emitting process(es)")
    width = max(len(result.name) for result in results) + 2
    print(f"  {'':<38}" + "".join(f"{result.name:>{width}}" for result in results))
    for label, cell in rows.items():
        print(f"  {label:<38}" + "".join(f"{cell(result):>{width}}" for result in results))
    for result in results:
        for note in result.notes:
            print(f"  {result.name}: {note}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("  Aspects' published figure for its batched pipeline: over 50 events/s on a single worker")


def run_ours(devstack: Devstack, options) -> Result:
    return Bench(devstack, options).run("aspects-sink")


def run_stock(devstack: Devstack, options) -> Result:
    with StockPipeline(devstack, options.cache_url) as stock:
        bench = Bench(devstack, options, other_process=stock.ralph.process.pid)
        result = bench.run(stock.name)
        left = stock.stranded()
        if left:
            result.notes.append(f"{left:,} events still in its Redis batch, sent when the next event arrives")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events per phase (rounded to whole rounds)")
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--emitters", type=int, default=1, help="LMS processes emitting at once (MySQL only)")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="mysql")
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379",
        help="Redis server for the Celery broker and the cache (--broker-db, --cache-db), as on a Tutor site; "
        "'none': the embedded filesystem broker and a file cache",
    )
    parser.add_argument("--no-stock", action="store_true", help="measure aspects-sink only")
    parser.add_argument(
        "--stall", type=float, default=30, help="seconds without a new statement, the pipeline idle, that end a phase"
    )
    parser.add_argument("--broker-db", type=int, default=9, help="Redis database of the Celery broker (emptied first)")
    parser.add_argument(
        "--cache-db", type=int, default=10, help="Redis database of the cache and ERB's batch (emptied first)"
    )
    parser.add_argument("--mysql-database", default=MYSQL_DATABASE, help="MariaDB database of the LMS (dropped first)")
    parser.add_argument(
        "--profile", type=Path, help="directory for cProfile statistics of each emitting process (slows them)"
    )
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".benchmarks" / "xapi")
    options = parser.parse_args()
    if options.emitters > 1 and options.db != "mysql":
        parser.error("--emitters above 1 needs --db mysql: SQLite runs one writing transaction at a time")
    if not options.no_stock and (options.db != "mysql" or options.redis == "none"):
        parser.error(
            "the stock pipeline needs --db mysql (ERB finds its LRS route only with MySQL's case-insensitive "
            "matching) and Redis (its batching); add --no-stock to measure aspects-sink alone"
        )
    redis = None if options.redis == "none" else options.redis.rstrip("/")
    options.cache_url = f"{redis}/{options.cache_db}" if redis else None
    for database in {options.broker_db, options.cache_db} if redis else ():
        Redis.from_url(f"{redis}/{database}").flushdb()  # no task, cached router or batch of an earlier run

    shutil.rmtree(options.state_dir, ignore_errors=True)
    if options.db == "mysql":
        drop_database(options.mysql_database)  # an earlier run's LRS route would send this run's events to it
    devstack = Devstack(
        options.state_dir,
        settings={**SETTINGS, **({"CACHES": redis_cache(options.cache_url)} if redis else {})},
        broker_url=f"{redis}/{options.broker_db}" if redis else None,
        database=options.db,
        mysql_database=options.mysql_database if options.db == "mysql" else None,
    )
    with devstack:
        results = [run_ours(devstack, options)]
        if not options.no_stock:
            results.append(run_stock(devstack, options))
    report(options, results)


if __name__ == "__main__":
    main()
