"""
The services this machine provides to the tests (MariaDB, Redis), and a Redis server of a test's own.

On CI (``CI`` set) a missing service fails the test that needs it; on a developer's machine the test
is skipped, saying what to start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(available: bool, what: str) -> None:
    """Fail on CI, skip elsewhere, when something a test needs is missing."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} (required on CI)")
    pytest.skip(f"{what}; install or start it to run this test")


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

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a word, connections and all."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
