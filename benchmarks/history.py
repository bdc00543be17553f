"""
History benchmark: tracking logs in object storage → xAPI statements in ClickHouse, with
``aspects_sink_xapi_history`` (one process, then ``--workers 2``) and, side by side in the same run, with
event-routing-backends' ``transform_tracking_logs`` routed as Aspects ships it (ERB's Celery task posting to a
Ralph LRS on the same ClickHouse endpoint, ``stock_xapi``)::

    .tox/py312-django52/bin/python benchmarks/history.py                       # 1,000,000 events, ERB on 20,000
    .tox/py312-django52/bin/python benchmarks/history.py --events 200000 --erb-events 10000

Load: a course and ``--learners`` learners in the stand-in LMS (MariaDB), each doing one round of activity
(``devstack_tools.learner_activity``) recorded as edx-platform's tracking-log lines. Those lines are the
templates of ``--events`` events, learner after learner, every event at a time of its own (so every statement
id differs), cut into ``--objects`` rotated logs, one day each, gzipped (level 1, for a quick set-up) in a
bucket of moto's S3 server. Making them is not measured.

Measured, each from an empty raw table: the command as a process of its own, from start to exit (Django's
start-up included), the statements in ClickHouse checked against the events; peak RSS of the process tree
(workers included) sampled every 0.2 s with psutil, the RSS after a tenth of the run, to show it flat, and the
peak PSS, which counts the pages forked workers share once. The LMS processes import no pandas, as on a site
(:func:`without_pandas`).
``transform_tracking_logs`` does not gunzip: it reads plain copies of the first ``--erb-events`` events'
logs under another prefix, and is measured from its start to the last statement in ClickHouse (one Celery
worker posting to Ralph); its rate is extrapolated to the whole load, which the output says.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from xapi import cpu_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "devstack"))
sys.path.insert(1, str(REPO_ROOT))

from devstack_settings import drop_database  # noqa: E402 - devstack/ must be importable first
from processes import DEVSTACK_DIR, Devstack  # noqa: E402
from profiles import print_profile  # noqa: E402
from redis import Redis  # noqa: E402
from stock_xapi import StockPipeline, redis_cache  # noqa: E402

from tests.support.object_storage import S3Server  # noqa: E402

MYSQL_DATABASE = "aspects_bench_history"
BUCKET = "tracking-logs"
FIRST_DAY = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

SETUP = """
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from xmodule.modulestore.course_builder import create_course
from aspects_sink.models import XapiStatement

course = activity.CourseBlocks.of(create_course("HistX", "Bench", "2025", "History benchmark", blocks=60))
learners = [create_user(f"hist{i}", f"hist{i}@example.com", name=f"Hist {i}") for i in range(LEARNERS)]
for learner in learners:
    ExternalId.add_new_user_id(learner, "xapi")  # as registration does
with activity.recording() as events:
    for learner in learners:
        activity.emit(learner, course, activity.round_of_events(learner, course))
XapiStatement.objects.all().delete()  # the live route's copies: only the history is measured
result = {"course": str(course.course_key), "lines": [activity.tracking_log_line(event) for event in events]}
"""
_TIME = re.compile(r'"time": "([^"]+)"')


@dataclass(frozen=True)
class Run:
    """One import, measured."""

    name: str
    events: int
    statements: int
    seconds: float
    peak_rss_mb: float
    early_rss_mb: float
    peak_pss_mb: float
    cpu_seconds: float
    notes: str = ""

    @property
    def rate(self) -> float:
        return self.statements / self.seconds


def without_pandas(state_dir: Path) -> Path:
    """
    A folder which, first on the LMS processes' path, makes ``import pandas`` fail, as it fails on a site:
    edx-platform does not install pandas, the test environment has it for chDB (the devstack's ClickHouse, a
    process of its own). clickhouse-connect imports pandas at a process's first INSERT when it can, which would
    add about 70 MB and a second or two to every process measured.
    """
    folder = state_dir / "without-pandas"
    (folder / "pandas").mkdir(parents=True, exist_ok=True)
    (folder / "pandas" / "__init__.py").write_text('raise ImportError("an LMS has no pandas")\n')
    return folder


def children_cpu() -> float:
    """User and system CPU of this process's children that ended (and of their own ended children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def templates(lines: list[str]) -> list[tuple[str, ...]]:
    """Each recorded line cut around its time, to be joined again with another time."""
    cut = []
    for line in lines:
        original = _TIME.search(line).group(1)
        cut.append(tuple(line.split(original)))
    return cut


def generate(templates_: list[tuple[str, ...]], events: int, objects: int) -> Iterator[tuple[str, bytes]]:
    """``events`` lines in ``objects`` daily logs ``(day, text)``: event ``i`` is template ``i % n`` at its time."""
    per_object = -(-events // objects)
    for index in range(objects):
        day = FIRST_DAY + datetime.timedelta(days=index)
        first, last = index * per_object, min((index + 1) * per_object, events)
        step = datetime.timedelta(seconds=86_000 / max(last - first, 1))
        lines = []
        for number in range(first, last):
            stamp = (day + (number - first) * step).isoformat()
            lines.append(stamp.join(templates_[number % len(templates_)]))
        yield day.strftime("%Y%m%d"), ("\n".join(lines) + "\n").encode()


class TreeMemory:
    """
    Memory of a process and its descendants, sampled every 0.2 s until the process ends: RSS, and PSS (each
    page shared by forked workers counted once among them, which summed RSS counts in each).
    """

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, float]] = []
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while True:
            try:
                tree = [p for p in [self.process, *self.process.children(recursive=True)] if p.is_running()]
                memory = [p.memory_full_info() for p in tree]
            except psutil.Error:
                return
            rss, pss = sum(m.rss for m in memory), sum(m.pss for m in memory)
            self.samples.append((time.monotonic(), rss / 2**20, pss / 2**20))
            time.sleep(0.2)

    def figures(self) -> tuple[float, float, float]:
        """Peak RSS, RSS a tenth of the way through the run, and peak PSS (MB)."""
        self.thread.join()
        if not self.samples:
            return 0.0, 0.0, 0.0
        start, end = self.samples[0][0], self.samples[-1][0]
        early = next(rss for at, rss, _ in self.samples if at >= start + (end - start) / 10)
        return max(rss for _, rss, _ in self.samples), early, max(pss for _, _, pss in self.samples)


class Benchmark:
    def __init__(self, devstack: Devstack, s3: S3Server, options):
        self.devstack = devstack
        self.s3 = s3
        self.options = options
        self.client = devstack.clickhouse_client()
        self.log = devstack.state_dir / "benchmark.log"

    def statements(self) -> int:
        return int(self.client.command("SELECT count() FROM xapi.xapi_events_all"))

    def empty(self) -> None:
        self.client.command("TRUNCATE TABLE xapi.xapi_events_all")

    def env(self) -> dict:
        return {**self.devstack.env(), **self.s3.environment()}

    def command(self, *arguments: str) -> list[str]:
        return [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", *arguments]

    def ours(self, events: int, workers: int, profiler: list[str] = ()) -> Run:
        self.empty()
        argv = [*profiler, *self.command(
            "aspects_sink_xapi_history", f"s3://{BUCKET}/gz/", "--workers", str(workers), "--no-progress"
        )]  # fmt: skip
        with self.log.open("ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            started, cpu = time.monotonic(), children_cpu()
            process = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
            memory = TreeMemory(process.pid)
            process.wait()
            seconds, cpu = time.monotonic() - started, children_cpu() - cpu
        if process.returncode:
            raise RuntimeError(f"aspects_sink_xapi_history exited {process.returncode}; see {self.log}")
        arrived = self.statements()
        if arrived != events:
            raise RuntimeError(f"{arrived:,} statements in ClickHouse for {events:,} events; see {self.log}")
        summary = self.log.read_text().rsplit("$ ", 1)[1]
        inside = re.search(r"\(([\d,]+)/s over", summary)
        note = f"{inside.group(1)}/s inside the command" if inside else ""
        name = f"aspects_sink_xapi_history{f' --workers {workers}' if workers > 1 else ''}"
        return Run(name, events, arrived, seconds, *memory.figures(), cpu, note)

    def erb(self, events: int) -> Run:
        """ERB's command on the plain copies, to the last statement Ralph wrote into ClickHouse."""
        self.empty()
        config = {
            "container": BUCKET,
            "prefix": "plain/",
            "key": self.s3.credentials.access_key,
            "secret": self.s3.credentials.secret_key,
            "host": "127.0.0.1",
            "port": self.s3.port,
            "secure": False,
        }
        with StockPipeline(self.devstack, self.options.cache_url) as stock:
            services = (stock.ralph.process.pid,)
            argv = self.command(
                "transform_tracking_logs", "--source_provider", "MINIO", "--source_config", json.dumps(config),
                "--destination_provider", "LRS", "--transformer_type", "xapi",
                "--batch_size", str(self.options.erb_batch_size), "--sleep_between_batches_secs", "0",
            )  # fmt: skip
            worker = self.devstack.start_worker()
            services += (worker.pid,)
            try:
                with self.log.open("ab") as log:
                    log.write(f"\n$ {' '.join(argv[:6])} … --transformer_type xapi\n".encode())
                    log.flush()
                    started, cpu = time.monotonic(), children_cpu() + sum(map(cpu_seconds, services))
                    process = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
                    memory = TreeMemory(process.pid)
                    arrived, last = 0, time.monotonic()
                    while arrived < events and (process.poll() is None or time.monotonic() - last < 60):
                        time.sleep(0.1)
                        now = self.statements()
                        if now > arrived:
                            arrived, last = now, time.monotonic()
                    process.wait()
                    cpu = children_cpu() + sum(map(cpu_seconds, services)) - cpu
            finally:
                self.devstack.stop_worker(worker)
        self.devstack.update_settings(ASPECTS_SINK_XAPI_ENABLED=True)
        if process.returncode:
            raise RuntimeError(f"transform_tracking_logs exited {process.returncode}; see {self.log}")
        note = f"measured on {events:,} events, rate extrapolated" if events < self.options.events else ""
        if arrived < events:
            note += f"; only {arrived:,} of {events:,} statements arrived"
        name = "ERB transform_tracking_logs → Ralph"
        return Run(name, events, arrived, last - started, *memory.figures(), cpu, note)


def profile(benchmark: Benchmark, py_spy: str, events: int) -> None:
    """One more single-process run under py-spy (not measured); where its samples fall, by package and function."""
    output = benchmark.devstack.state_dir / "profile.txt"
    benchmark.ours(
        events, 1, [py_spy, "record", "--format", "raw", "--full-filenames", "--rate", "200", "-o", str(output), "--"]
    )
    print_profile(output, "Where one process spends its time")


def upload(s3: S3Server, logs: Iterator[tuple[str, bytes]], erb_events: int) -> tuple[int, int]:
    """Gzipped logs under ``gz/``, plain copies of the first ``erb_events`` events' under ``plain/``."""
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    stored = erb = 0
    for day, text in logs:
        body = gzip.compress(text, compresslevel=1)
        client.put_object(Bucket=BUCKET, Key=f"gz/tracking.log-{day}.gz", Body=body)
        stored += len(body)
        if erb < erb_events:
            lines = text.splitlines(keepends=True)[: erb_events - erb]
            client.put_object(Bucket=BUCKET, Key=f"plain/tracking.log-{day}", Body=b"".join(lines))
            erb += len(lines)
    return stored, erb


def report(options, runs: list[Run], stored: int, started_load: tuple[float, ...]) -> None:
    erb = next((run for run in runs if run.name.startswith("ERB")), None)
    print(
        f"\nTracking-log history into ClickHouse: {options.events:,} events in {options.objects} gzipped objects "
        f"({stored / 2**20:,.0f} MiB) in moto's S3 server; chDB endpoint; MariaDB LMS"
    )
    print(
        f"  {'':<38}{'events':>11}{'seconds':>9}{'statements/s':>14}{'× ERB':>8}{'CPU/statement':>15}{'× ERB':>8}"
        f"{'peak RSS':>10}{'RSS at 10%':>12}{'peak PSS':>10}"
    )
    for run in runs:
        compared = erb and run is not erb and erb.rate
        ratio = f"{run.rate / erb.rate:7.1f}×" if compared else ""
        cpu = run.cpu_seconds / max(run.statements, 1)
        cpu_ratio = f"{erb.cpu_seconds / max(erb.statements, 1) / cpu:7.1f}×" if compared else ""
        print(
            f"  {run.name:<38}{run.events:>11,}{run.seconds:>9.1f}{run.rate:>14,.0f}{ratio:>8}{1000 * cpu:>12.2f} ms"
            f"{cpu_ratio:>8}{run.peak_rss_mb:>7.0f} MB{run.early_rss_mb:>9.0f} MB{run.peak_pss_mb:>7.0f} MB"
        )
    print(
        "  CPU: the command's processes (workers included); for ERB also its Celery worker and Ralph. Wall time: "
        "process start to exit, or (ERB) to its last statement in ClickHouse. Memory: the command's process tree, "
        "RSS summed, and PSS (pages its processes share counted once)"
    )
    for run in runs:
        if run.notes:
            print(f"  {run.name}: {run.notes}")
    print(
        f"  load average before the runs {started_load[0]:.1f}, after {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--learners", type=int, default=200, help="learners whose activity the events repeat")
    parser.add_argument(
        "--erb-events", type=int, default=20_000, help="events ERB's command imports (its rate is extrapolated)"
    )
    parser.add_argument("--erb-batch-size", type=int, default=1000, help="transform_tracking_logs' --batch_size")
    parser.add_argument("--no-erb", action="store_true", help="measure aspects-sink only")
    parser.add_argument("--only-one", action="store_true", help="only the single process (no --workers 2)")
    parser.add_argument("--py-spy", help="py-spy's executable: profile one more single-process run with it")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis for the broker and the cache")
    parser.add_argument("--redis-dbs", default="11,12", help="Redis databases of the broker and the cache (emptied)")
    parser.add_argument("--mysql-database", default=MYSQL_DATABASE, help="MariaDB database of the LMS (dropped)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".benchmarks" / "history")
    options = parser.parse_args()
    redis = options.redis.rstrip("/")
    broker_db, cache_db = options.redis_dbs.split(",")
    options.cache_url = f"{redis}/{cache_db}"
    for database in {broker_db, cache_db}:
        Redis.from_url(f"{redis}/{database}").flushdb()

    shutil.rmtree(options.state_dir, ignore_errors=True)
    options.state_dir.mkdir(parents=True)
    drop_database(options.mysql_database)  # an earlier run's LRS route and checkpoints
    devstack = Devstack(
        options.state_dir,
        settings={"CACHES": redis_cache(options.cache_url)},
        broker_url=f"{redis}/{broker_db}",
        database="mysql",
        mysql_database=options.mysql_database,
        extra_pythonpath=(without_pandas(options.state_dir),),
    )
    s3 = S3Server(options.state_dir, authenticate=False)
    s3.start()
    try:
        with devstack:
            print(f"recording {options.learners} learners' activity in the LMS")
            setup = devstack.run_python("lms", SETUP.replace("LEARNERS", str(options.learners)))
            print(f"generating {options.events:,} events in {options.objects} logs")
            logs = generate(templates(setup["lines"]), options.events, options.objects)
            stored, erb_events = upload(s3, logs, 0 if options.no_erb else min(options.erb_events, options.events))
            load = os.getloadavg()
            runs = [Benchmark(devstack, s3, options).ours(options.events, 1)]
            print(f"  {runs[-1]}")
            if not options.only_one:
                runs.append(Benchmark(devstack, s3, options).ours(options.events, 2))
                print(f"  {runs[-1]}")
            if not options.no_erb:
                runs.append(Benchmark(devstack, s3, options).erb(erb_events))
                print(f"  {runs[-1]}")
            if options.py_spy:
                profile(Benchmark(devstack, s3, options), options.py_spy, options.events)
    finally:
        s3.stop()
    report(options, runs, stored, load)


if __name__ == "__main__":
    main()
