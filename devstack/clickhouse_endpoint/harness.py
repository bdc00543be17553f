"""Runs the server as a child process, for tests, the demo and benchmarks.

Reliability tests stop and restart "the ClickHouse server" under a running LMS and its workers, which only a
separate process allows. Importing this module loads neither chDB nor the HTTP server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from types import TracebackType
from typing import IO

from .auth import INSECURE_NO_PASSWORD_FLAG, PASSWORD_ENVIRONMENT_VARIABLE

# The folder that holds this package, which the child process needs on its path to run it with ``-m``.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_NAME = __package__


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ClickHouseEndpoint:
    """Runs the server as a child process, for tests and demos that need a ClickHouse they can stop and restart.

    ``restart()`` keeps the port and the data, which is what a client sees when the real server restarts. The
    server's output goes to a temporary file (a pipe nobody reads could block it) and is quoted if it fails to start.
    Like the server, it refuses an empty password unless ``insecure_no_password`` says otherwise. ``grants`` adds
    users with only the rights listed (``{user: {"password": ..., "grants": {database: [privilege, ...]}}}``, see
    ``clickhouse_endpoint.grants``); their every check is appended to :attr:`audit_log`.
    """

    STARTUP_TIMEOUT_SECONDS = 30.0
    STOP_TIMEOUT_SECONDS = 15.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        user: str = "default",
        password: str = "",
        *,
        insecure_no_password: bool = False,
        grants: dict | None = None,
    ) -> None:
        if not password and not insecure_no_password:
            raise ValueError("the ClickHouse endpoint needs a password (or insecure_no_password=True)")
        self.data_dir = os.fspath(data_dir)
        self.port = port or free_port()
        self.user = user
        self.password = password
        self.insecure_no_password = insecure_no_password
        self.grants = grants
        self.audit_log = f"{self.data_dir}-grant-checks.jsonl" if grants else None
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ClickHouseEndpoint({self.url!r}, data_dir={self.data_dir!r}, user={self.user!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ClickHouseEndpoint:
        """Start the server and return once it answers pings; raise, quoting its output, if it cannot start."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - open while the server runs, closed by stop()
        command = [sys.executable, "-m", PACKAGE_NAME, "serve", "--port", str(self.port), "--data-dir", self.data_dir]
        if self.grants:
            grants_file = f"{self.data_dir}-grants.json"
            with open(os.open(grants_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
                json.dump({"users": self.grants}, file)
            command += ["--grants", grants_file, "--audit-log", self.audit_log]
        python_path = os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [*command, "--user", self.user, *([INSECURE_NO_PASSWORD_FLAG] if self.insecure_no_password else [])],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            # The password goes in the environment, off the command line, which ps shows.
            env={**os.environ, "PYTHONPATH": python_path, PASSWORD_ENVIRONMENT_VARIABLE: self.password},
        )
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """Stop the server with SIGTERM, killing it if it has not exited in time."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(self.STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._forget_process()

    def _forget_process(self) -> None:
        """The server is gone: drop its handle and close its output file."""
        self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- faults, for reliability tests ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    def kill(self) -> None:
        """Kill the server with SIGKILL, as the OOM killer or a lost machine would: no clean shutdown of any kind."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._forget_process()

    def pause(self) -> None:
        """
        Freeze the server (SIGSTOP): connections are still accepted and requests still sent (the kernel buffers
        them), but nothing is answered until :meth:`resume` — a ClickHouse slower than any client's timeout. A
        request a client gave up on meanwhile still runs once resumed, as on a real server.
        """
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); it works through what was sent meanwhile."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> ClickHouseEndpoint:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.STARTUP_TIMEOUT_SECONDS
        while not self._answers_ping():
            if not self.running:
                output = self.output()
                self.stop()
                raise RuntimeError(f"ClickHouse endpoint on port {self.port} exited during startup:\n{output}")
            if time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise TimeoutError(f"ClickHouse endpoint on port {self.port} not ready in time:\n{output}")
            time.sleep(0.05)

    def _answers_ping(self) -> bool:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with no_proxy.open(f"{self.url}/ping", timeout=1) as response:
                return response.read() == b"Ok.\n"
        except OSError:
            return False

    def grant_checks(self) -> list[dict]:
        """Every grant check of the users of ``grants`` so far, in order (see ``clickhouse_endpoint.grants``)."""
        if not self.audit_log or not os.path.exists(self.audit_log):
            return []
        with open(self.audit_log, encoding="utf-8") as audit:
            return [json.loads(line) for line in audit]

    def output(self) -> str:
        """What the server has printed since it started: its address, a line per request, any traceback.

        Read without moving the file offset, which the server process shares and writes at.
        """
        if self._output is None:
            return ""
        descriptor = self._output.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")
