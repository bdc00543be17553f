"""
The fault matrix's devstack: one per backend (SQLite with the embedded broker and the file cache; MariaDB with a
Redis broker and a Redis cache of its own, both killable), shared by every scenario of the backend, and the
table of outcomes rendered at the end of the session.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from processes import DEVSTACK_DIR, Devstack, PlatformProcess

from tests.support import scenarios
from tests.support.devstacks import TEST_SETTINGS, drop_mysql_database, make_devstack
from tests.support.faults import Count, LmsDatabase, Outcome, record, render_table, results_dir, settle
from tests.support.services import RedisServer, require_service

SETTINGS = {
    **TEST_SETTINGS,
    # Two tries before a rejected object is parked: the matrix checks that it is, not how patiently.
    "ASPECTS_SINK_MAX_ATTEMPTS": 2,
    "ASPECTS_SINK_XAPI_MAX_ATTEMPTS": 2,
    # A republished course (a fixed one) is sent within a second, not after the tests' usual 30.
    "ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS": 1,
    "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS": 0.5,
    # The client gives up connecting after 3 s and waits 10 s for an answer: "ClickHouse slower than the read
    # timeout" takes seconds, not the default 30, and a loaded CI machine's endpoint still answers in time.
    "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG": {"timeout_secs": 3, "read_timeout_secs": 10},
}


@dataclass
class FaultStack:
    """A devstack whose services a scenario can kill: ClickHouse, the worker, and on MariaDB the broker and cache."""

    backend: str
    devstack: Devstack
    broker: RedisServer | None = None
    cache: RedisServer | None = None
    lms: PlatformProcess | None = None
    cms: PlatformProcess | None = None
    worker: subprocess.Popen | None = None
    processes: list = field(default_factory=list)

    @property
    def db(self) -> LmsDatabase:
        return LmsDatabase(self.devstack)

    @property
    def clickhouse(self):
        return self.devstack.clickhouse

    def client(self):
        return self.devstack.clickhouse_client()

    def start_worker(self) -> None:
        self.worker = self.devstack.start_worker(beat=True)

    def stop_worker(self) -> None:
        self.devstack.stop_worker(self.worker)
        self.worker = None

    def kill_worker(self) -> None:
        """SIGKILL: the worker has no chance to finish, acknowledge or give anything back."""
        self.devstack.kill_worker(self.worker)
        self.worker = None

    def dump(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        """``dump_data_to_clickhouse`` in a process of its own, as an operator runs it."""
        return self.devstack.manage("lms", "dump_data_to_clickhouse", "--sleep_time", "0", *arguments, check=check)

    def start_dump(self, *arguments: str) -> subprocess.Popen:
        command = [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", "dump_data_to_clickhouse", "--no-progress"]
        return subprocess.Popen(
            [*command, *arguments], env=self.devstack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    @contextlib.contextmanager
    def frozen_clickhouse(self):
        """ClickHouse frozen (SIGSTOP) for the block, resumed after it unless the block killed it."""
        self.clickhouse.pause()
        try:
            yield
        finally:
            if self.clickhouse.running:
                self.clickhouse.resume()

    def heal(self) -> None:
        """
        Everything running again, whatever a scenario left behind (a failed one included), and the shared cache
        empty: a wake-up a scenario lost (with a killed worker or broker) holds its sink's schedule in the cache
        until the sweep finds it overdue (``scheduling.LOST_AFTER``); the next scenario starts without it.
        """
        if self.clickhouse.running:
            self.clickhouse.resume()
        else:
            self.clickhouse.start()
        for server in (self.broker, self.cache):
            if server and (server.process is None or server.process.poll() is not None):
                server.start()
        if self.worker is None or self.worker.poll() is not None:
            if self.worker is not None:
                self.devstack.workers.remove(self.worker)
            self.start_worker()
        if self.cache:
            import redis

            redis.Redis(port=self.cache.port).flushall()
        else:
            shutil.rmtree(self.devstack.state_dir / "cache", ignore_errors=True)

    def learners(self, prefix: str, course: str, count: int = 6, **options) -> dict:
        return self.lms.call(scenarios.fault_learners, prefix=prefix, course=course, count=count, **options)

    def settle(self, count) -> Count:
        return settle(self.devstack, self.db, count)

    def finish(
        self,
        scenario: str,
        path: str,
        *,
        changes: int,
        count: Count,
        failed: list[str],
        seconds: float,
        notes: str = "",
    ) -> Outcome:
        """Record the cell and assert it: nothing lost, nothing twice, nothing unexpected, no request failed."""
        outcome = Outcome.of(
            scenario, path, self.backend, changes=changes, count=count, failed=failed, seconds=seconds, notes=notes
        )
        record(outcome)
        assert failed == [], failed
        assert count.exact, (outcome, count.examples)
        return outcome


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """The backend's devstack (parametrized indirectly by each test with the backends it applies to)."""
    backend = request.param
    options: dict = {"database": "sqlite"}
    settings = dict(SETTINGS)
    broker = cache = None
    if backend == "mariadb-redis":
        require_service("MariaDB", "127.0.0.1", 3306)
        broker, cache = RedisServer(tmp_path_factory.mktemp("broker")), RedisServer(tmp_path_factory.mktemp("cache"))
        broker.start()
        cache.start()
        options = {"database": "mysql", "broker_url": broker.url}
        settings["CACHES"] = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": cache.url}
        }
    devstack = make_devstack(tmp_path_factory, "faults", settings=settings, tutor_grants=True, **options)
    fault_stack = FaultStack(backend, devstack, broker, cache)
    try:
        fault_stack.start_worker()
        fault_stack.lms = devstack.platform_process("lms")
        fault_stack.cms = devstack.platform_process("cms")
        yield fault_stack
    finally:
        for process in (fault_stack.lms, fault_stack.cms):
            if process:
                process.close()
        devstack.stop()
        drop_mysql_database(devstack)
        for server in (broker, cache):
            if server:
                server.stop()


@pytest.fixture(autouse=True)
def whole_again(stack):
    """After each scenario, every service runs again: the next one starts from a whole devstack."""
    yield
    stack.heal()


def pytest_terminal_summary(terminalreporter):
    """The matrix of this run, when scenarios ran: printed, and written next to the recorded outcomes."""
    results = results_dir() / "results.jsonl"
    if not results.exists():
        return
    import json

    outcomes = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    table = render_table(outcomes)
    (Path(results.parent) / "fault-matrix.md").write_text(table, encoding="utf-8")
    terminalreporter.write_sep("=", f"fault matrix (lost / duplicates / failed requests), in {results.parent}")
    terminalreporter.write(table)
