"""
Fixtures for end-to-end tests: a devstack (LMS, CMS, Celery worker, ClickHouse endpoint) run as real
processes, and the services this machine provides (MariaDB, Redis).

On CI (``CI`` set) a missing MariaDB or Redis fails the test; on a developer's machine it is skipped,
saying why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "devstack"))

import devstack_settings  # noqa: E402
from processes import Devstack  # noqa: E402

from tests.conftest import require, service_available  # noqa: E402

# Fast retries, a fast sweep and short publish windows, so outages heal within a test's patience.
TEST_SETTINGS = {
    "ASPECTS_ENABLE_PII": True,
    "ASPECTS_SINK_RETRY_BASE_SECONDS": 0.5,
    "ASPECTS_SINK_RETRY_MAX_SECONDS": 2,
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 2,
    "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS": 0.5,
    # Longer than a publishing storm takes even on a busy machine: the storm test expects one or two dumps.
    "ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS": 30,
    "ASPECTS_SINK_MAX_ATTEMPTS": 3,
}


def require_service(name: str, host: str, port: int) -> None:
    """Require a service listening on ``host:port`` (fail on CI, skip elsewhere)."""
    require(service_available(host, port), f"{name} is not running on {host}:{port}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A Redis server of the test's own (the broker the outage test stops and starts again)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        require(binary is not None, "redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not service_available("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def make_devstack(tmp_path_factory, name: str, *, database: str = "sqlite", **kwargs) -> Devstack:
    """A started devstack in a fresh state directory (and a fresh MariaDB database when asked)."""
    mysql_database = None
    if database == "mysql":
        require_service("MariaDB", "127.0.0.1", 3306)
        mysql_database = f"aspects_e2e_{name}_{uuid.uuid4().hex[:8]}"
    settings = {**TEST_SETTINGS, **kwargs.pop("settings", {})}
    devstack = Devstack(
        tmp_path_factory.mktemp(name), settings=settings, database=database, mysql_database=mysql_database, **kwargs
    )
    devstack.start()
    return devstack


def drop_mysql_database(devstack: Devstack) -> None:
    """Remove the MariaDB database a devstack created for one test module."""
    if devstack.mysql_database:
        devstack_settings.drop_database(devstack.mysql_database)


def outbox_counts(devstack: Devstack) -> dict:
    """Pending and dead outbox entries, as the LMS sees them."""
    return devstack.run_python(
        "lms",
        """
        from aspects_sink.models import OutboxEntry
        result = {state: OutboxEntry.objects.filter(state=state).count() for state in ("pending", "dead")}
        """,
    )


def wait_until_drained(devstack: Devstack, timeout: float = 90) -> None:
    """Wait until the outbox holds nothing pending (dead letters may stay)."""
    devstack.wait_for(lambda: outbox_counts(devstack)["pending"] == 0, timeout=timeout, interval=1, what="empty outbox")
