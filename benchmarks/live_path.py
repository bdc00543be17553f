"""
Live-path benchmark: platform changes → one Celery worker → ClickHouse, measured end to end, for aspects-sink
and then, under the same load, for the existing plugin (platform-plugin-aspects)::

    python benchmarks/live_path.py                         # SQLite LMS, embedded broker
    python benchmarks/live_path.py --db mysql --broker redis://127.0.0.1:6379/9
    python benchmarks/live_path.py --skip-legacy           # aspects-sink only

Each plugin runs on a devstack of its own (state directory, LMS database, ClickHouse endpoint), one after the
other, so the two never compete for the CPUs; both are seeded the same way and share the broker URL.

Load: ``--writers`` LMS processes save learner profiles, one transaction per change (as a request would),
at ``--rate`` changes per second in total for ``--seconds``. Each change writes its own time into the
profile (``goals``) and the writers log every change and how long its save took (commit and the plugin's
receivers included: the request's share of the work). A change is delivered when a row of its profile
holding it (or a later change: a row holds the profile as it was read) is in ClickHouse; rows carry the time
they were built (``time_last_dumped``, just before their INSERT), which gives every change's latency whether
the plugin coalesces changes into batches (aspects-sink) or sends one task and one row per change (the
existing plugin). Merges of ``user_profile`` are stopped so that no row is merged away before it is counted.
INSERTs are counted as distinct ``dump_id`` values. Delivery is awaited until every change is
delivered or ``--grace`` seconds after the load ended; what is missing then is the backlog, and the existing
plugin's still-queued tasks are dropped. Then a CMS process publishes a 10,000-block course and the time until
all its blocks are in ClickHouse is measured, from the start of the publish and from its commit; a second such
course follows once the first one's dump interval is over, on a worker that has written a course before. For
aspects-sink the first course's time is split: commit → the drain reading the course (the wake-up: countdown,
broker, worker, claim; from the rows' ``time_last_dumped``, taken when the drain starts reading), then the write
itself, whose parts are timed again in an LMS process on the same course — the stand-in modulestore loading it (its
share, not the plugin's), the plugin's serialization, and its INSERTs.

Backlog: the worker is stopped, ``--backlog`` profile changes are made (learners picked at random, a hundred
saves per transaction), the worker is started again, and what it drains per second is measured from the moment
it is ready to the row that delivered the last change (at most ``--backlog-timeout`` seconds; the existing
plugin, one task per change, gets ``--legacy-backlog`` changes). ``--py-spy`` records the worker meanwhile and
prints where its time went. Figures are printed; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "devstack"))

from backfill import Command  # noqa: E402 - devstack/ must be importable first
from devstack_settings import drop_database  # noqa: E402
from legacy_live import LegacyPlatform, legacy_python  # noqa: E402
from processes import DEVSTACK_DIR, Devstack  # noqa: E402
from profiles import print_profile  # noqa: E402
from xapi import cpu_seconds  # noqa: E402

SETTINGS = {"ASPECTS_ENABLE_PII": True, "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 30}
COURSE_BLOCKS = 10_000
COURSE_TIMEOUT = 180  # seconds from publish to all blocks in ClickHouse before giving up
DUMPED = "toUnixTimestamp64Micro(parseDateTime64BestEffort(time_last_dumped, 6)) / 1e6"

WRITER = """
import random, time
from django.db import transaction
from common.djangoapps.student.models import UserProfile

profiles = list(UserProfile.objects.filter(user_id__gt=FIRST, user_id__lte=LAST))
interval = 1.0 / RATE
started = time.time()
changes = []
while time.time() - started < SECONDS:
    profile = random.choice(profiles)
    changed = time.time()
    with transaction.atomic():
        profile.goals = repr(changed)
        profile.save(update_fields=["goals"])
    changes.append((profile.id, changed, time.time() - changed))
    ahead = started + len(changes) * interval - time.time()
    if ahead > 0:
        time.sleep(ahead)
result = {"changes": changes, "started": started, "ended": time.time()}
"""

# Every edx-platform course has a grading policy; the existing plugin's course serializer needs one.
PUBLISH = f"""
import time
from xmodule.modulestore.course_builder import create_course
started = time.time()
key = create_course("Bench", COURSE, "2026", blocks={COURSE_BLOCKS}, lowest_passing_grade=0.5)
committed = time.time()
result = {{"course": str(key), "started": started, "committed": committed, "publish_seconds": committed - started}}
"""
# The second course is published once the first one's drain interval (ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS,
# 10 s by default) is over, so that it is dumped at once too: a publish on a worker that has written a course before,
# as a site's long-lived workers have.
SECOND_PUBLISH_AFTER = 12.0

# The parts of aspects-sink's course write, timed in an LMS process (the best of three): the stand-in modulestore
# loading the course and making its blocks' keys (a real modulestore hands blocks over with their keys), the
# sink's serialization (the rest of ``writes_for``: the overview, tags, block rows), and the INSERTs.
COURSE_SPLIT = """
import time
from aspects_sink import edx_platform
from aspects_sink.connection import get_transport
from aspects_sink.models import VersionTick
from aspects_sink.sinks.base import Stamp
from aspects_sink.sinks.registry import get_sink

sink, transport, key = get_sink("course_overviews"), get_transport(), edx_platform.course_key(COURSE)
rounds = []
for _ in range(3):
    started = time.perf_counter()
    for block in edx_platform.published_blocks(key):
        block.location
    store = time.perf_counter() - started
    started = time.perf_counter()
    writes = sink.writes_for([COURSE], Stamp(version=VersionTick.allocate()))
    serialization = time.perf_counter() - started - store
    started = time.perf_counter()
    for batch in writes:
        transport.insert(batch)
    rounds.append({"modulestore": store, "serialization": serialization, "insert": time.perf_counter() - started})
result = min(rounds, key=lambda parts: sum(parts.values()))
"""

# Backlog: profile changes made while no worker runs, to learners picked at random as in the load, in transactions
# of a hundred saves (the outbox is the same however the changes were made, and the backlog is made sooner).
BACKLOG = """
import random, time
from django.db import transaction
from common.djangoapps.student.models import UserProfile

profiles = list(UserProfile.objects.filter(user_id__gt=FIRST, user_id__lte=LAST))
started = time.time()
changes = []
for start in range(0, CHANGES, 100):
    with transaction.atomic():
        for number in range(start, min(start + 100, CHANGES)):
            profile = random.choice(profiles)
            changed = time.time()
            profile.goals = repr(changed)
            profile.save(update_fields=["goals"])
            changes.append((profile.id, changed, 0.0))
result = {"changes": changes, "started": started, "ended": time.time()}
"""


class AspectsSink:
    """The devstack as this project runs it: aspects-sink loaded, ``manage.py`` processes, the harness' worker."""

    name = "aspects-sink"
    database = "event_sink"
    # Its backlog is its outbox, platform data its worker keeps delivering: nothing to drop after the load.
    purge_after_load = False

    def __init__(self, devstack: Devstack):
        self.devstack = devstack
        self.worker: subprocess.Popen | None = None
        self.worker_log: Path | None = None

    def django(self, service: str, *args: str) -> Command:
        """A Django management command in an LMS or CMS process of this platform."""
        return Command(
            [sys.executable, str(DEVSTACK_DIR / "manage.py"), service, *args], self.devstack.env(), REPO_ROOT
        )

    def celery(self, *args: str) -> Command:
        """A Celery command on the LMS's app."""
        env = {**self.devstack.env(), "DJANGO_SETTINGS_MODULE": "lms.envs.devstack"}
        return Command([sys.executable, "-m", "celery", "-A", "lms.celery", *args], env, DEVSTACK_DIR)

    def start_delivery(self) -> None:
        """One worker, started by the harness (the tables were created when the devstack started)."""
        self.worker = self.devstack.start_worker()
        self.worker_log = self.worker.log_path

    def stop_delivery(self) -> None:
        """Stop the worker (it finishes its task first)."""
        self.devstack.stop_worker(self.worker)

    def course_split(self, course: str) -> dict[str, float]:
        """The parts of the course's write, timed in an LMS process (:data:`COURSE_SPLIT`)."""
        return result_of(shell(self, "lms", COURSE_SPLIT.replace("COURSE", repr(course))), timeout=600)


Platform = AspectsSink | LegacyPlatform


def rank(fraction: float, count: int) -> int:
    """The index of a quantile among ``count`` sorted values (nearest rank)."""
    return max(math.ceil(fraction * count) - 1, 0)


def quantile(values: list[float], fraction: float) -> float:
    """A quantile of sorted values."""
    return values[rank(fraction, len(values))]


@dataclass(frozen=True)
class LoadFigures:
    """What one plugin made of the load, from the writers' change log and the rows in ClickHouse."""

    changes: int
    load_seconds: float  # first change to last change
    saves: list[float]  # how long each change's save took, sorted
    latencies: list[float]  # of the delivered changes, sorted
    undelivered_floor: float  # the least any undelivered change has waited at the cut-off
    delivery_seconds: float  # load start to the row that delivered the last change
    rows: int
    inserts: int
    rows_seconds: float  # load start to the last row

    @property
    def delivered(self) -> int:
        return len(self.latencies)

    def latency(self, fraction: float) -> tuple[float | None, str]:
        """A latency quantile over all changes; a lower bound when it falls among the undelivered ones."""
        index = rank(fraction, self.changes)
        if index < self.delivered:
            return self.latencies[index], f"{self.latencies[index]:.2f}"
        return None, f"> {self.undelivered_floor:.0f}"


@dataclass(frozen=True)
class CourseFigures:
    """
    The 10,000-block course: its (last) publish, when all its blocks were in ClickHouse after that publish
    started and after it committed (None: never), how many publishes that took, when its rows were built after
    the commit (the drain starting to read it), and the parts of the write timed apart (aspects-sink only).
    """

    publish_seconds: float
    in_clickhouse_after: float | None
    after_commit: float | None
    publishes: int
    read_after_commit: float | None = None
    split: dict[str, float] | None = None


@dataclass(frozen=True)
class BacklogFigures:
    """What one worker made of a backlog of profile changes, from the moment it was ready."""

    changes: int
    delivered: int
    seconds: float  # worker ready → the row that delivered the last change delivered
    rows: int
    inserts: int
    worker_cpu: float  # CPU seconds the worker used meanwhile

    @property
    def rate(self) -> float:
        return self.delivered / max(self.seconds, 1e-9)


def run(command: Command, timeout: float = 600) -> str:
    """Run a command to its end and return what it printed; fail with its error output."""
    result = subprocess.run(
        command.argv, env=command.env, cwd=command.cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode:
        raise RuntimeError(f"{' '.join(command.argv[:6])} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def shell(platform: Platform, service: str, code: str) -> subprocess.Popen:
    """Start Python code in an LMS or CMS process (Django set up); it prints what it assigns to ``result``."""
    command = platform.django(service, "shell", "-c", f"{code}\nimport json\nprint('@@' + json.dumps(result))")
    return subprocess.Popen(
        command.argv, env=command.env, cwd=command.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def result_of(process: subprocess.Popen, timeout: float) -> Any:
    """What a :func:`shell` process assigned to ``result``."""
    output, errors = process.communicate(timeout=timeout)
    if process.returncode:
        raise RuntimeError(f"shell exited {process.returncode}:\n{errors[-4000:]}")
    return json.loads(output[output.rfind("@@") + 2 :])


def prepare(platform: Platform, users: int) -> None:
    """
    Empty the broker queue (a Redis broker outlives runs), seed learners and a course the same way for both
    plugins, start the plugin's delivery, and stop merges of the table the load is measured in.
    """
    run(platform.celery("purge", "--force"))
    run(platform.django("lms", "seed_devstack", "--users", str(users), "--courses", "1"))
    platform.start_delivery()
    keep_every_row(platform)


def keep_every_row(platform: Platform) -> None:
    """
    Stop merges of the plugin's ``user_profile`` table, so that every row inserted stays there to be counted:
    aspects-sink's table keeps one row per profile once merged, which would hide when a profile's earlier
    changes arrived. Done for both plugins; it spares ClickHouse merge work, most of it for the existing plugin's
    many one-row parts. (A materialized view copying the rows would instead add work to every INSERT.)
    """
    platform.devstack.clickhouse_client(database=platform.database).command("SYSTEM STOP MERGES user_profile")


def run_writers(platform: Platform, options, code: str, rate: float = 0) -> list[dict]:
    """
    Start the writer processes together, each running ``code`` on its own share of the learners (and of
    ``rate``), and collect their logs.
    """
    share = options.users // options.writers
    processes = [
        shell(
            platform,
            "lms",
            code.replace("FIRST", str(index * share))
            .replace("LAST", str((index + 1) * share))
            .replace("RATE", str(rate / options.writers))
            .replace("SECONDS", str(options.seconds)),
        )
        for index in range(options.writers)
    ]
    return [result_of(process, timeout=options.seconds + 1800) for process in processes]


def wait_for_delivery(client, changes: list[tuple[int, float]], load_started: float, deadline: float) -> float:
    """
    Poll ClickHouse until every profile's last change is in it, or until ``deadline``; return that moment
    (the cut-off: rows built later are not counted).
    """
    last_change: dict[int, float] = {}
    for profile_id, changed in changes:
        last_change[profile_id] = max(changed, last_change.get(profile_id, 0.0))
    while True:
        newest = dict(
            client.query(
                "SELECT id, argMax(goals, toFloat64OrZero(goals)) FROM user_profile "
                "WHERE toFloat64OrZero(goals) >= {start:Float64} GROUP BY id",
                parameters={"start": load_started},
            ).result_rows
        )
        if all(float(newest.get(profile_id, 0)) >= changed for profile_id, changed in last_change.items()):
            return time.time()
        if time.time() >= deadline:
            return deadline
        time.sleep(1)


def arrivals(changes: list[tuple[int, float]], rows: list[tuple[int, float, float]]) -> list[float | None]:
    """
    When each change reached ClickHouse: when the first row of its profile holding it or a later change was
    built; None if there is none. ``rows`` are (profile id, change time held, time built).
    """
    by_profile: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for profile_id, goals, dumped in sorted(rows, key=lambda row: row[2]):
        by_profile[profile_id].append((dumped, goals))
    return [
        next((dumped for dumped, goals in by_profile[profile_id] if goals >= changed), None)
        for profile_id, changed in changes
    ]


@dataclass(frozen=True)
class Delivery:
    """Changes made and what of them ClickHouse holds by the cut-off: when each arrived (None: not yet)."""

    changes: list[tuple[int, float]]  # (profile id, change time)
    arrived: list[float | None]
    cutoff: float
    rows: int
    inserts: int
    last_row: float  # when the last row counted was built

    @property
    def latencies(self) -> list[float]:
        return sorted(at - changed for at, (_, changed) in zip(self.arrived, self.changes) if at is not None)

    @property
    def last_arrival(self) -> float | None:
        return max((at for at in self.arrived if at is not None), default=None)


def delivery(platform: Platform, changes: list[tuple[int, float]], started: float, deadline: float) -> Delivery:
    """Wait for the changes made from ``started`` on to be in ClickHouse (until ``deadline``) and read their rows."""
    client = platform.devstack.clickhouse_client(database=platform.database)
    cutoff = wait_for_delivery(client, changes, started, deadline=deadline)
    rows = client.query(
        f"SELECT id, goals, {DUMPED} AS dumped, dump_id FROM user_profile "
        "WHERE toFloat64OrZero(goals) >= {start:Float64} AND dumped <= {cutoff:Float64}",
        parameters={"start": started, "cutoff": cutoff},
    ).result_rows
    return Delivery(
        changes=changes,
        arrived=arrivals(changes, [(profile_id, float(goals), dumped) for profile_id, goals, dumped, _ in rows]),
        cutoff=cutoff,
        rows=len(rows),
        inserts=len({row[3] for row in rows}),
        last_row=max((row[2] for row in rows), default=started),
    )


def measure_changes(platform: Platform, options) -> LoadFigures:
    """Run the load, wait for its delivery (up to the grace period), and read what arrived."""
    results = run_writers(platform, options, WRITER, options.rate)
    log = [change for result in results for change in result["changes"]]
    started = min(result["started"] for result in results)
    ended = max(result["ended"] for result in results)
    changes = [(profile_id, changed) for profile_id, changed, _ in log]
    arrived = delivery(platform, changes, started, deadline=ended + options.grace)
    waiting = [changed for at, (_, changed) in zip(arrived.arrived, arrived.changes) if at is None]
    return LoadFigures(
        changes=len(log),
        load_seconds=max(changed for _, changed, _ in log) - started,
        saves=sorted(seconds for _, _, seconds in log),
        latencies=arrived.latencies,
        undelivered_floor=arrived.cutoff - max(waiting, default=arrived.cutoff),
        delivery_seconds=(arrived.last_arrival or started) - started,
        rows=arrived.rows,
        inserts=arrived.inserts,
        rows_seconds=arrived.last_row - started,
    )


def measure_backlog(platform: Platform, options, changes: int) -> BacklogFigures:
    """
    Stop the worker, make ``changes`` profile changes, start the worker again and measure what it drains per
    second, up to ``--backlog-timeout`` seconds (under py-spy with ``--py-spy``).
    """
    platform.stop_delivery()
    results = run_writers(platform, options, BACKLOG.replace("CHANGES", str(changes // options.writers)))
    log = [(profile_id, changed) for result in results for profile_id, changed, _ in result["changes"]]
    started = min(result["started"] for result in results)
    platform.start_delivery()
    ready, cpu = time.time(), cpu_seconds(platform.worker.pid)
    profiler = spy(platform, options.py_spy) if options.py_spy else None
    arrived = delivery(platform, log, started, deadline=ready + options.backlog_timeout)
    worker_cpu = cpu_seconds(platform.worker.pid) - cpu
    if profiler:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
        print_profile(platform.devstack.state_dir / "backlog-profile.txt", f"[{platform.name}] the worker draining")
    delivered = sum(at is not None for at in arrived.arrived)
    return BacklogFigures(
        changes=len(log),
        delivered=delivered,
        seconds=(arrived.last_arrival or ready) - ready,
        rows=arrived.rows,
        inserts=arrived.inserts,
        worker_cpu=worker_cpu,
    )


def spy(platform: Platform, py_spy: str) -> subprocess.Popen:
    """py-spy recording the worker (raw stacks, 100 samples a second) until interrupted."""
    output = platform.devstack.state_dir / "backlog-profile.txt"
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(platform.worker.pid), "--format", "raw", "--full-filenames",
         "--rate", "100", "--nonblocking", "-o", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def worker_errors(platform: Platform, since: int = 0) -> int:
    """Error lines (failed tasks, refused messages) in the plugin's worker log from byte ``since`` on."""
    with platform.worker_log.open("rb") as log:
        log.seek(since)
        return log.read().count(b" ERROR/")


def await_blocks(platform: Platform, course: str, log_offset: int) -> bool:
    """
    Whether all the course's blocks reach ClickHouse; False as soon as the worker logs an error (a failed dump
    is not retried), or after ``COURSE_TIMEOUT``.
    """
    client = platform.devstack.clickhouse_client(database=platform.database)
    deadline = time.monotonic() + COURSE_TIMEOUT
    while time.monotonic() < deadline and not worker_errors(platform, since=log_offset):
        count = client.command(
            "SELECT count() FROM course_blocks WHERE course_key = {c:String}", parameters={"c": course}
        )
        if count >= COURSE_BLOCKS:
            return True
        time.sleep(0.05)
    return False


def measure_course(platform: Platform, name: str = "Big", attempts: int = 2, split: bool = True) -> CourseFigures:
    """
    Publish a big course (``name`` is its course code) from a CMS process and wait until all its blocks are in
    ClickHouse. When its dump fails, the course is published again (the overview then exists before the publish),
    up to ``attempts``. ``split``: time the parts of aspects-sink's write apart.
    """
    for attempt in range(1, attempts + 1):
        log_offset = platform.worker_log.stat().st_size
        published = result_of(shell(platform, "cms", f"COURSE = {name!r}\n{PUBLISH}"), timeout=600)
        if await_blocks(platform, published["course"], log_offset):
            seen = time.time()
            client = platform.devstack.clickhouse_client(database=platform.database)
            built = client.command(
                f"SELECT min({DUMPED}) FROM course_blocks WHERE course_key = {{c:String}} "
                f"AND {DUMPED} >= {{committed:Float64}} - 60",
                parameters={"c": published["course"], "committed": published["committed"]},
            )
            return CourseFigures(
                published["publish_seconds"],
                seen - published["started"],
                seen - published["committed"],
                attempt,
                read_after_commit=float(built) - published["committed"],
                # The existing plugin's write is one task (read, serialize, insert): not split.
                split=(
                    platform.course_split(published["course"]) if split and isinstance(platform, AspectsSink) else None
                ),
            )
    return CourseFigures(published["publish_seconds"], None, None, attempts)


def cell(value: float, spec: str, *, compared: bool = True) -> tuple[float | None, str]:
    """A table cell: how it is printed, and its value if a ratio of the two plugins' values means something."""
    return (value if compared else None), format(value, spec)


def benchmark(platform: Platform, options) -> dict[str, tuple[float | None, str]]:
    """One plugin's live path on its own devstack, measured; its figures as table cells."""
    with platform.devstack:
        print(f"[{platform.name}] seeding {options.users:,} learners, starting the worker", flush=True)
        prepare(platform, options.users)
        print(
            f"[{platform.name}] {options.seconds:.0f}s of load, then up to {options.grace:.0f}s for delivery "
            f"(machine load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        load = measure_changes(platform, options)
        if platform.purge_after_load:
            run(platform.celery("purge", "--force"))
        print(f"[{platform.name}] publishing the {COURSE_BLOCKS:,}-block course", flush=True)
        course = measure_course(platform)
        time.sleep(SECOND_PUBLISH_AFTER)
        print(f"[{platform.name}] publishing a second {COURSE_BLOCKS:,}-block course", flush=True)
        second = measure_course(platform, "Big2", split=False)
        backlog = None
        changes = options.backlog if isinstance(platform, AspectsSink) else min(options.backlog, options.legacy_backlog)
        if changes:
            print(
                f"[{platform.name}] a backlog of {changes:,} profile changes, then one worker "
                f"(machine load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            backlog = measure_backlog(platform, options, changes)
            if platform.purge_after_load:
                run(platform.celery("purge", "--force"))
    return cells(load, course, second, backlog, worker_errors(platform))


def cells(
    load: LoadFigures, course: CourseFigures, second: CourseFigures, backlog: BacklogFigures | None, errors: int
) -> dict[str, tuple[float | None, str]]:
    """One plugin's figures as table cells: label → (value, as printed)."""
    never = (None, "never")
    split = course.split or {}

    def part(name: str) -> tuple[float | None, str]:
        return cell(split[name], ".2f") if name in split else (None, "—")

    figures = {
        "changes made": cell(load.changes, ","),
        "  per second": cell(load.changes / load.load_seconds, ",.0f"),
        "profile save p50 (ms)": cell(1000 * quantile(load.saves, 0.5), ".2f"),
        "profile save p95 (ms)": cell(1000 * quantile(load.saves, 0.95), ".2f"),
        "changes delivered": cell(load.delivered, ","),
        "  per second (load start → last)": cell(load.delivered / max(load.delivery_seconds, 1e-9), ",.0f"),
        "backlog at cut-off (changes)": cell(load.changes - load.delivered, ",", compared=False),
        "user_profile rows": cell(load.rows, ","),
        "user_profile INSERTs per second": cell(load.inserts / max(load.rows_seconds, 1e-9), ",.2f"),
        "rows per INSERT": cell(load.rows / max(load.inserts, 1), ",.1f"),
        "change → row latency p50 (s)": load.latency(0.5),
        "change → row latency p95 (s)": load.latency(0.95),
        "course publish (s)": cell(course.publish_seconds, ".2f"),
        f"publish → {COURSE_BLOCKS:,} blocks in ClickHouse (s)": (
            cell(course.in_clickhouse_after, ".2f") if course.in_clickhouse_after is not None else never
        ),
        "  commit → all blocks in ClickHouse (s)": (
            cell(course.after_commit, ".2f") if course.after_commit is not None else never
        ),
        "  commit → the drain reads it (wake-up) (s)": (
            cell(course.read_after_commit, ".2f") if course.read_after_commit is not None else (None, "—")
        ),
        "  write apart: stand-in modulestore (s)": part("modulestore"),
        "  write apart: plugin's serialization (s)": part("serialization"),
        "  write apart: plugin's INSERTs (s)": part("insert"),
        "course publishes needed": cell(course.publishes, "d", compared=False),
        "second course: commit → all blocks (s)": (
            cell(second.after_commit, ".2f") if second.after_commit is not None else never
        ),
        "  its wake-up (s)": (
            cell(second.read_after_commit, ".2f") if second.read_after_commit is not None else (None, "—")
        ),
    }
    if backlog is not None:
        figures |= {
            "backlog: changes queued": cell(backlog.changes, ",", compared=False),
            "backlog: delivered by one worker": cell(backlog.delivered, ",", compared=False),
            "backlog: changes drained per second": cell(backlog.rate, ",.0f"),
            "backlog: rows per INSERT": cell(backlog.rows / max(backlog.inserts, 1), ",.1f"),
            "backlog: worker CPU per change (ms)": cell(1000 * backlog.worker_cpu / max(backlog.delivered, 1), ".3f"),
        }
    return figures | {"worker log errors": cell(errors, "d", compared=False)}


def print_table(columns: dict[str, dict[str, tuple[float | None, str]]]) -> None:
    """Metric | one column per plugin | the first plugin's value divided by the second's."""
    names = list(columns)
    compare = len(names) == 2
    header = ["metric", *names, *(["ratio"] if compare else [])]
    lines = []
    for metric in columns[names[0]]:
        cells = [columns[name][metric] for name in names]
        line = [metric, *(text for _, text in cells)]
        if compare:
            (ours, _), (theirs, _) = cells
            line.append(f"{ours / theirs:.2f}×" if ours is not None and theirs else "—")
        lines.append(line)
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def aligned(line: list[str]) -> str:
        return " | ".join([line[0].ljust(widths[0]), *(text.rjust(w) for text, w in zip(line[1:], widths[1:]))])

    print(aligned(header))
    print("-+-".join("-" * width for width in widths))
    for line in lines:
        print(aligned(line))


def new_devstack(state_dir: Path, options, mysql_database: str) -> Devstack:
    """A devstack from scratch in ``state_dir`` (on MariaDB, in ``mysql_database``)."""
    shutil.rmtree(state_dir, ignore_errors=True)
    if options.db == "mysql":
        drop_database(mysql_database)
    return Devstack(
        state_dir,
        settings=SETTINGS,
        broker_url=options.broker,
        database=options.db,
        mysql_database=mysql_database if options.db == "mysql" else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=600, help="changes per second, all writers together")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--grace", type=float, default=30, help="seconds after the load to wait for delivery")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--broker", help="a Celery broker URL (default: the embedded filesystem broker)")
    parser.add_argument("--mysql-database", default="aspects_bench_live", help="(and <name>_legacy) with --db mysql")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".benchmarks" / "live")
    parser.add_argument("--skip-legacy", action="store_true", help="measure aspects-sink only")
    parser.add_argument("--backlog", type=int, default=100_000, help="profile changes in the backlog (0: none)")
    parser.add_argument(
        "--legacy-backlog", type=int, default=10_000, help="at most this many for the existing plugin (a task each)"
    )
    parser.add_argument("--backlog-timeout", type=float, default=180, help="seconds the worker gets for the backlog")
    parser.add_argument("--py-spy", help="py-spy's executable: record the worker while it drains the backlog")
    options = parser.parse_args()

    python = None if options.skip_legacy else legacy_python()
    ours = AspectsSink(new_devstack(options.state_dir, options, options.mysql_database))
    columns = {ours.name: benchmark(ours, options)}
    if python:
        state_dir = options.state_dir.with_name(f"{options.state_dir.name}-legacy")
        legacy = LegacyPlatform(new_devstack(state_dir, options, f"{options.mysql_database}_legacy"), python)
        columns[legacy.name] = benchmark(legacy, options)

    print(
        f"\nLive path, one worker each, {options.db}, broker {options.broker or 'embedded (filesystem)'}, "
        f"{options.writers} writers at {options.rate:,.0f} changes/s for {options.seconds:.0f}s, "
        f"{options.grace:.0f}s grace; backlog {options.backlog:,} changes; load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (the machine may be shared)"
    )
    print_table(columns)


if __name__ == "__main__":
    main()
