"""
Backfill benchmark: aspects-sink's ``dump_data_to_clickhouse`` side by side with the existing plugin's
(platform-plugin-aspects), on the same seeded stand-in LMS and the same ClickHouse endpoint::

    python benchmarks/backfill.py                          # 100,000 rows, SQLite
    python benchmarks/backfill.py --users 1000000          # 100,000 and then 1,000,000 rows
    DEVSTACK_DB=mysql python benchmarks/backfill.py --db mysql   # MariaDB on 127.0.0.1:3306, root

Each dump runs as its own process, as an operator would run it; the figures are end to end (process start
to exit); the peak RSS and the CPU time (user and system, a measure the machine's load hardly changes) are that
process's own (``wait4``). ClickHouse is the devstack's chDB endpoint, a separate process. Each plugin runs
from a virtualenv of its own under ``.benchmarks/`` (created on first use) holding the plugin and what the
stand-in LMS needs, nothing else. The existing plugin writes to
database ``event_sink_legacy``, whose tables have Aspects' own layout, engines and keys (``aspects_schema``).
aspects-sink's re-dumps are measured too: over rows ClickHouse already holds, unchanged (in its own tables
and in Aspects') and all changed (in Aspects' tables, altered there). The seeded data is kept under
``.benchmarks/state-<db>`` and extended, never rebuilt, by later runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_DIR = REPO_ROOT / "devstack"
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
WORK_DIR = REPO_ROOT / ".benchmarks"
sys.path.insert(0, str(DEVSTACK_DIR))

from aspects_schema import create_aspects_tables  # noqa: E402 - devstack/ must be importable first
from processes import Devstack  # noqa: E402

LEGACY_VERSION = {(3, 12): "2.1.0", (3, 11): "1.1.2"}[sys.version_info[:2]]
LEGACY_DATABASE = "event_sink_legacy"
# What the stand-in LMS needs besides the plugin, at the versions this project's environment runs
# (edx-platform ships event-routing-backends, and aspects-sink's xAPI path uses it; openedx-learning's
# tagging app is one of the platform's apps).
DEVSTACK_PACKAGES = (
    "Django",
    "edx-event-routing-backends",
    "openedx-learning",
    "edx-opaque-keys",
    "django-model-utils",
    "event-tracking",
    "edx-celeryutils",
    "django-waffle",
    "openedx-events",
    "PyMySQL",
    "PyYAML",
)
BATCH_SIZE = "10000"
ROW_OBJECTS = ("user_profile", "course_enrollment")


@dataclass(frozen=True)
class Command:
    """A process to run: its arguments, environment and working directory."""

    argv: list[str]
    env: dict
    cwd: Path


@dataclass(frozen=True)
class Run:
    """One dump, measured."""

    plugin: str
    what: str
    rows: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float = 0.0  # the process's own CPU time (user and system, all its threads), not ClickHouse's

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.plugin:<30} {self.what:<58} {self.seconds:6.1f}s {self.rows_per_second:>9,.0f}/s "
            f"{self.peak_rss_mb:4.0f} MB {self.cpu_seconds:6.1f}s CPU"
        )


class Plugins:
    """How to run each plugin's ``dump_data_to_clickhouse`` on the devstack, and where its rows land."""

    def __init__(self, devstack: Devstack, ours_python: Path, legacy_python: Path | None):
        self.devstack = devstack
        self.ours_python = ours_python
        self.legacy_python = legacy_python

    def ours(self, sink: str, database: str | None = None) -> Command:
        argv = [str(self.ours_python), str(DEVSTACK_DIR / "manage.py"), "lms", "dump_data_to_clickhouse"]
        argv += ["--object", sink, "--batch_size", BATCH_SIZE, "--sleep_time", "0", "--no-progress"]
        argv += ["--database", database] if database else []
        return Command(argv, self.devstack.env(), REPO_ROOT)

    def legacy(self, sink: str) -> Command:
        argv = [str(self.legacy_python), "-m", "django", "dump_data_to_clickhouse"]
        argv += ["--object", sink, "--batch_size", BATCH_SIZE, "--sleep_time", "0"]
        env = self.devstack.env()
        env.update(
            {
                # Not the repository root: its aspects_sink.egg-info would load aspects-sink as a plugin too.
                "PYTHONPATH": os.pathsep.join([str(DEVSTACK_DIR), str(BENCHMARKS_DIR)]),
                "DJANGO_SETTINGS_MODULE": "legacy_settings",
                "SERVICE_VARIANT": "lms",
                "ASPECTS_SINK_CLICKHOUSE_DATABASE": LEGACY_DATABASE,
            }
        )
        return Command(argv, env, DEVSTACK_DIR)


def measure(plugin: str, what: str, rows: int, command: Command, log: Path) -> Run:
    """Run one dump as a process of its own; its wall time and its own peak RSS (``wait4``)."""
    with log.open("ab") as output:
        output.write(f"\n$ (cd {command.cwd}) {' '.join(command.argv)}\n".encode())
        output.flush()
        started = time.perf_counter()
        process = subprocess.Popen(
            command.argv, env=command.env, cwd=command.cwd, stdout=subprocess.DEVNULL, stderr=output
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{plugin} {what} exited {process.returncode}; see {log}")
    return Run(plugin, what, rows, seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


class Benchmark:
    """Seed, dump with both plugins, check what arrived, report."""

    def __init__(self, devstack: Devstack, plugins: Plugins, log: Path, repeat: int):
        self.devstack = devstack
        self.plugins = plugins
        self.log = log
        self.repeat = repeat
        self.clickhouse = devstack.clickhouse_client()
        self.runs: list[Run] = []

    def count(self, database: str, table: str, *, final: bool) -> int:
        return int(self.clickhouse.command(f"SELECT count() FROM {database}.{table}{' FINAL' if final else ''}"))

    def truncate(self, table: str) -> None:
        for database in ("event_sink", LEGACY_DATABASE):
            self.clickhouse.command(f"TRUNCATE TABLE IF EXISTS {database}.{table}")

    def dump(self, sink: str, what: str, expected: int, tables: tuple[str, ...]) -> None:
        """
        Dump ``sink`` with each plugin into empty tables, ``repeat`` times taking turns, and keep each plugin's
        fastest run (this machine is shared: the fastest run is the one least disturbed). Every run is
        checked: ``expected`` objects must have arrived.
        """
        plugins = [("aspects-sink", self.plugins.ours, "event_sink", True)]
        if self.plugins.legacy_python:
            plugins.append((f"platform-plugin-aspects {LEGACY_VERSION}", self.plugins.legacy, LEGACY_DATABASE, False))
        fastest: dict[str, Run] = {}
        for _ in range(self.repeat):
            for name, command_for, database, final in plugins:
                for table in tables:
                    self.truncate(table)
                run = measure(name, what, expected, command_for(sink), self.log)
                arrived = self.count(database, tables[0], final=final)
                if arrived != expected:
                    raise RuntimeError(f"{name} {what}: {arrived:,} in {database}.{tables[0]}, expected {expected:,}")
                print(f"  {run}")
                if name not in fastest or run.seconds < fastest[name].seconds:
                    fastest[name] = run
        self.runs.extend(fastest.values())

    def redump(self, sink: str, what: str, expected: int) -> None:
        """
        aspects-sink's dump (without --force) when ClickHouse already holds the objects: unchanged, in its own
        tables and in Aspects' (nothing is sent, no row added), and all changed in Aspects' tables (every row's
        ``username`` altered in ClickHouse after the first dump, so every object differs and is sent again).
        """
        ours = "aspects-sink"
        cases = (
            ("event_sink", "same, own tables", False, expected),
            (LEGACY_DATABASE, "same, Aspects' tables", False, expected),
            (LEGACY_DATABASE, "all changed, Aspects'", True, 2 * expected),
        )
        for database, case, alter, rows_after in cases:
            self.truncate(sink)
            measure(ours, f"{what} first dump", expected, self.plugins.ours(sink, database), self.log)
            if alter:
                self.clickhouse.command(
                    f"ALTER TABLE {database}.{sink} UPDATE username = concat(username, '~') WHERE 1",
                    settings={"mutations_sync": 2},
                )
            run = measure(ours, f"{what} re-dump, {case}", expected, self.plugins.ours(sink, database), self.log)
            held = self.count(database, sink, final=False)
            if held != rows_after:
                raise RuntimeError(f"{run.what}: {held:,} rows in {database}.{sink}, expected {rows_after:,}")
            print(f"  {run}")
            self.runs.append(run)


def lms_count(devstack: Devstack, model: str) -> int:
    models = {
        "users": "django.contrib.auth.models.User",
        "enrollments": "common.djangoapps.student.models.CourseEnrollment",
        "courses": "openedx.core.djangoapps.content.course_overviews.models.CourseOverview",
    }
    module, _, name = models[model].rpartition(".")
    return devstack.run_python("lms", f"from {module} import {name}\nresult = {name}.objects.count()")


def seed(devstack: Devstack, *, users: int = 0, enrollments: int = 0, courses: int = 0, blocks: int = 59) -> None:
    """Bring the LMS up to at least these counts (seeding is additive and deterministic)."""
    missing_courses = courses - lms_count(devstack, "courses")
    if missing_courses > 0:
        print(f"seeding {missing_courses:,} courses of {blocks} blocks")
        devstack.manage("lms", "seed_devstack", "--courses", str(missing_courses), "--blocks-per-course", str(blocks))
        # edx-platform gives every course a grading policy (passing grade 0.5 by default); the stand-in's
        # seeded courses have none, which the existing plugin's course serializer cannot handle.
        devstack.run_python(
            "lms",
            "from openedx.core.djangoapps.content.course_overviews.models import CourseOverview\n"
            "CourseOverview.objects.filter(lowest_passing_grade=None).update(lowest_passing_grade=0.5)",
        )
    missing_users = users - lms_count(devstack, "users")
    if missing_users > 0:
        print(f"seeding {missing_users:,} users with profiles")
        devstack.manage("lms", "seed_devstack", "--users", str(missing_users), "--batch-size", "20000", timeout=7200)
    for _ in range(3):  # pairs drawn at random may already exist: top up until there are enough
        missing_enrollments = enrollments - lms_count(devstack, "enrollments")
        if missing_enrollments <= 0:
            break
        print(f"seeding {missing_enrollments:,} enrollments")
        devstack.manage("lms", "seed_devstack", "--enrollments", str(missing_enrollments), timeout=7200)


def virtualenv(name: str, requirements: list[str], *, devstack: bool = True, depends_on: str = "") -> Path:
    """
    A virtualenv of its own under .benchmarks/ (made once per set of requirements, and per ``depends_on``: the
    install requirements of a package installed editable), with what the stand-in LMS needs at the versions
    this environment runs (unless ``devstack`` is False: a service of its own, such as an LRS). Each plugin
    gets one, so that neither runs with the other's dependencies or with the test tools (chDB brings pandas,
    which clickhouse-connect then imports).
    """
    venv = WORK_DIR / f"{name}-py{sys.version_info.major}.{sys.version_info.minor}"
    python = venv / "bin" / "python"
    if devstack:
        requirements = [*requirements, *(f"{package}=={version(package)}" for package in DEVSTACK_PACKAGES)]
    stamp, wanted = venv / ".installed", "\n".join([*requirements, *filter(None, [depends_on])])
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"creating {venv}: {' '.join(requirements)}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([*installer(python), *requirements], check=True)
        stamp.write_text(wanted)
    return python


def installer(python: Path) -> list[str]:
    """uv when it is on the PATH (``make test`` puts .venv's there: a minute or two less per virtualenv), else pip."""
    uv = shutil.which("uv")
    if uv:
        return [uv, "pip", "install", "--quiet", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "--quiet"]


def create_legacy_tables(devstack: Devstack) -> None:
    """Aspects' own tables (its layout, engines and keys) in the existing plugin's database."""
    client = devstack.clickhouse_client(database="default")
    create_aspects_tables(client, LEGACY_DATABASE)
    client.close()


def report(runs: list[Run], ours: str = "aspects-sink") -> None:
    """Both plugins' figures per dump, and the ratio."""
    print()
    heading = f"{'dump':<58} {'plugin':<30} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9} {'CPU s':>8} {'speed-up':>9}"
    print(heading)
    print("-" * len(heading))
    by_what: dict[str, list[Run]] = {}
    for run in runs:
        by_what.setdefault(run.what, []).append(run)
    for what, group in by_what.items():
        baseline = next((run for run in group if run.plugin != ours), None)
        for run in group:
            ratio = f"{run.rows_per_second / baseline.rows_per_second:8.1f}×" if baseline and run.plugin == ours else ""
            print(
                f"{what:<58} {run.plugin:<30} {run.seconds:8.1f} {run.rows_per_second:>10,.0f} "
                f"{run.peak_rss_mb:>6.0f} MB {run.cpu_seconds:>8.1f} {ratio:>9}"
            )


def benchmark_size(arguments: argparse.Namespace, size: int, pythons: tuple, *, courses: bool) -> list[Run]:
    """Every dump at one size, in a devstack of its own (kept under .benchmarks/ for the next run)."""
    state = WORK_DIR / f"state-{arguments.db}-{size}"
    mysql_database = f"{arguments.mysql_database}_{size}" if arguments.db == "mysql" else None
    devstack = Devstack(
        state, settings={"ASPECTS_ENABLE_PII": True}, database=arguments.db, mysql_database=mysql_database
    )
    devstack.start()
    try:
        create_legacy_tables(devstack)
        seed(devstack, courses=arguments.courses, blocks=arguments.blocks_per_course, users=size, enrollments=size)
        repeat = arguments.repeat if arguments.repeat else (3 if size <= 100_000 else 1)
        benchmark = Benchmark(devstack, Plugins(devstack, *pythons), state / "benchmark.log", repeat)
        print(f"{size:,} rows ({arguments.db}); commands and errors in {benchmark.log}")
        for sink, model in (("user_profile", "users"), ("course_enrollment", "enrollments")):
            benchmark.dump(sink, f"{sink} {size:,}", lms_count(devstack, model), (sink,))
            if not arguments.no_redump:
                benchmark.redump(sink, f"{sink} {size:,}", lms_count(devstack, model))
        if courses:
            count = lms_count(devstack, "courses")
            what = f"course_overviews {count:,}×{arguments.blocks_per_course}"
            benchmark.dump("course_overviews", what, count, ("course_overviews", "course_blocks"))
        return benchmark.runs
    finally:
        devstack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="largest size: users, profiles and enrollments")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument(
        "--mysql-database",
        default="aspects_benchmark",
        help="with --db mysql: the LMS databases' name, followed by _<size> (default aspects_benchmark)",
    )
    parser.add_argument("--courses", type=int, default=500, help="courses for the course_overviews dump")
    parser.add_argument("--blocks-per-course", type=int, default=59)
    parser.add_argument("--no-legacy", action="store_true", help="measure aspects-sink only")
    parser.add_argument(
        "--no-redump", action="store_true", help="skip aspects-sink's re-dumps over rows ClickHouse already holds"
    )
    parser.add_argument("--repeat", type=int, help="runs per dump, fastest kept (default 3 to 100k rows, else 1)")
    arguments = parser.parse_args(argv)

    sizes = sorted({min(100_000, arguments.users), arguments.users})
    base = (REPO_ROOT / "requirements" / "base.in").read_text()
    ours_python = virtualenv("aspects-sink", ["--editable", str(REPO_ROOT)], depends_on=base)
    legacy = [f"platform-plugin-aspects=={LEGACY_VERSION}"]
    legacy_python = None if arguments.no_legacy else virtualenv("legacy", legacy)
    runs = []
    for size in sizes:
        runs += benchmark_size(arguments, size, (ours_python, legacy_python), courses=size == sizes[0])
    report(runs)
    print(f"\nPython {sys.version.split()[0]}, {arguments.db}, batches of {BATCH_SIZE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
