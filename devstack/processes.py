"""
A small Open edX running as real processes: the devstack ClickHouse endpoint, LMS/CMS management
commands, and Celery workers, sharing one state directory (database, embedded broker) as the services
of a real installation share their database and broker.

The demo, the end-to-end tests and the benchmarks all drive the devstack through :class:`Devstack`,
so what the tests prove is what the demo shows. Platform actions (publishing, enrolling, retiring) run
in a separate LMS/CMS process through ``manage.py <service> shell``, never in the caller's process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

DEVSTACK_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEVSTACK_DIR.parent
if str(DEVSTACK_DIR) not in sys.path:
    sys.path.insert(0, str(DEVSTACK_DIR))

from clickhouse_endpoint import ClickHouseEndpoint  # noqa: E402 - devstack/ must be importable first

CLICKHOUSE_USER = "aspects"
CLICKHOUSE_PASSWORD = "devstack-password"
# The ClickHouse user Tutor gives the LMS and CMS (init-clickhouse.sh), and its only grants.
TUTOR_CLICKHOUSE_USER = "ch_lms"
TUTOR_CLICKHOUSE_PASSWORD = "ch-lms-password"
TUTOR_GRANTS = {"event_sink": ["INSERT", "SELECT", "DELETE"], "xapi": ["INSERT", "SELECT", "DELETE"]}


RESULT_MARKER = "@@RESULT@@"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def shell_code(code: str) -> str:
    """``code`` for ``manage.py <service> shell -c``, printing what it assigned to ``result`` as JSON."""
    wrapped = (
        textwrap.dedent(code) + f"\nimport json as _json\nprint({RESULT_MARKER!r} + _json.dumps(result, default=str))\n"
    )
    return wrapped if "result" in code else "result = None\n" + wrapped


def function_name(function: Callable | str) -> tuple[str, str]:
    """The module and attribute of a module-level function given as itself or as ``"package.module:function"``."""
    name = function if isinstance(function, str) else f"{function.__module__}:{function.__qualname__}"
    module, _, attribute = name.partition(":")
    if not attribute or "<" in attribute:
        raise ValueError(f"{name!r} is not a module-level function a process can import")
    return module, attribute


def function_call_code(function: Callable | str, /, **kwargs: Any) -> str:
    """
    Code that calls ``function`` with ``kwargs`` (given as JSON) and assigns what it returns to ``result``.

    ``function`` is a module-level function or its name as ``"package.module:function"``; the process
    that runs the code must be able to import the module.
    """
    module, attribute = function_name(function)
    return (
        "import importlib as _importlib, json as _json, operator as _operator\n"
        f"_function = _operator.attrgetter({attribute!r})(_importlib.import_module({module!r}))\n"
        f"result = _function(**_json.loads({json.dumps(kwargs)!r}))\n"
    )


def read_result(output: str) -> Any:
    """The result printed by code from :func:`shell_code` (None when it printed none)."""
    marker = output.rfind(RESULT_MARKER)
    return json.loads(output[marker + len(RESULT_MARKER) :]) if marker >= 0 else None


# What a :class:`PlatformProcess` runs: one call per line read, each answered by one marked line.
_SERVE_CALLS = f"""
import importlib, json, operator, sys, traceback
from django.db import close_old_connections
for _line in sys.stdin:
    _call = json.loads(_line)
    close_old_connections()
    try:
        _function = operator.attrgetter(_call["attribute"])(importlib.import_module(_call["module"]))
        _reply = {{"result": _function(**_call["kwargs"])}}
    except Exception:
        _reply = {{"error": traceback.format_exc()}}
    close_old_connections()
    print({RESULT_MARKER!r} + json.dumps(_reply, default=str), flush=True)
"""


class PlatformProcess:
    """
    One long-lived LMS or CMS process that runs functions on request, as a platform process serves request
    after request: what a process keeps between requests (the plugin's wake-up thread, its cache cool-down,
    database connections) carries from one call to the next, and a call costs no Django start-up.

    Made by :meth:`Devstack.platform_process`; :meth:`call` is :meth:`Devstack.run_function` in this process.
    What the process prints besides its replies goes to ``<state>/<service>-process-N.log``.
    """

    def __init__(self, devstack: Devstack, service: str):
        self.service = service
        self.log_path = devstack.state_dir / f"{service}-process-{time.monotonic_ns()}.log"
        command = [sys.executable, str(DEVSTACK_DIR / "manage.py"), service, "shell", "-c", _SERVE_CALLS]
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - written until close()
        self._process = subprocess.Popen(
            command,
            env=devstack.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._read, name=f"{service}-replies", daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(RESULT_MARKER):
                self._replies.put(json.loads(line[len(RESULT_MARKER) :]))
            else:
                self._log.write(line)
        self._replies.put({"error": f"the {self.service} process exited {self._process.wait()}"})

    def call(self, function: Callable | str, /, timeout: float = 600, **kwargs: Any) -> Any:
        """Call a module-level function in the process (arguments and result as JSON); raise what it raised."""
        module, attribute = function_name(function)
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"module": module, "attribute": attribute, "kwargs": kwargs}) + "\n")
        self._process.stdin.flush()
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            self.close()
            message = f"{module}:{attribute} did not return within {timeout}s in the {self.service} process"
            raise TimeoutError(message) from None
        if "error" in reply:
            raise RuntimeError(f"{module}:{attribute} failed in the {self.service} process:\n{reply['error']}")
        return reply["result"]

    def close(self, timeout: float = 20) -> None:
        """End the process as a platform process ends: what it still has to do at exit (wake-ups) is done."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


class Devstack:
    """
    A stand-in Open edX (LMS, CMS, workers) and a ClickHouse endpoint under one state directory.

    ``settings`` become ``ENV_TOKENS`` of both services (the way Tutor configures Open edX), so the
    plugin's production settings path is the one exercised. ``broker_url`` selects a real broker
    (e.g. Redis); without it the embedded filesystem broker is used. ``database="mysql"`` runs the
    LMS on MariaDB (in ``mysql_database``). ``extra_pythonpath`` lets the processes import a site's
    own code, such as an extra sink.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        settings: Mapping[str, Any] | None = None,
        broker_url: str | None = None,
        database: str = "sqlite",
        mysql_database: str | None = None,
        extra_pythonpath: tuple[str, ...] = (),
        tutor_grants: bool = False,
    ):
        """
        ``tutor_grants``: the LMS, CMS and workers connect to ClickHouse as Tutor's LMS user, whose only rights are
        Tutor's (``TUTOR_GRANTS``), and the endpoint records each of that user's grant checks; commands run with
        ``admin=True`` (the schema command) use the server's own user.
        """
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        grants = {TUTOR_CLICKHOUSE_USER: {"password": TUTOR_CLICKHOUSE_PASSWORD, "grants": TUTOR_GRANTS}}
        self.clickhouse = ClickHouseEndpoint(
            str(self.state_dir / "clickhouse"),
            user=CLICKHOUSE_USER,
            password=CLICKHOUSE_PASSWORD,
            grants=grants if tutor_grants else None,
        )
        self.tutor_grants = tutor_grants
        self.settings = dict(settings or {})
        self.broker_url = broker_url
        self.database = database
        self.mysql_database = mysql_database
        self.extra_pythonpath = tuple(str(path) for path in extra_pythonpath)
        self.workers: list[subprocess.Popen] = []
        self.web_servers: list[subprocess.Popen] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Devstack:
        """Start ClickHouse, migrate the LMS database and create the ClickHouse schema."""
        self.clickhouse.start()
        self._write_env_tokens()
        self.manage("lms", "migrate", "--noinput", "-v", "0")
        self.manage("lms", "aspects_sink_schema", admin=True)
        return self

    def stop(self) -> None:
        """Stop every worker and ClickHouse; the state directory stays for inspection."""
        for worker in list(self.workers):
            self.stop_worker(worker)
        for server in list(self.web_servers):
            self.stop_worker(server)
        self.clickhouse.stop()

    def __enter__(self) -> Devstack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- environment -----------------------------------------------------------------------------

    @property
    def env_tokens_path(self) -> Path:
        return self.state_dir / "env_tokens.json"

    def _write_env_tokens(self) -> None:
        self.env_tokens_path.write_text(json.dumps(self.settings, indent=2), encoding="utf-8")

    def update_settings(self, **settings: Any) -> None:
        """Change ENV_TOKENS for processes started from now on."""
        self.settings.update(settings)
        self._write_env_tokens()

    def env(self, *, admin: bool = False) -> dict[str, str]:
        """
        The environment every devstack process of this instance runs with; ``admin`` connects to ClickHouse as the
        server's own user even when the platform runs with Tutor's grants.
        """
        env = dict(os.environ)
        tutor = self.tutor_grants and not admin
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    [str(DEVSTACK_DIR), str(REPO_ROOT), *self.extra_pythonpath, *filter(None, [env.get("PYTHONPATH")])]
                ),
                "DEVSTACK_STATE_DIR": str(self.state_dir),
                "LMS_CFG": str(self.env_tokens_path),
                "CMS_CFG": str(self.env_tokens_path),
                "ASPECTS_SINK_CLICKHOUSE_URL": self.clickhouse.url,
                "ASPECTS_SINK_CLICKHOUSE_USERNAME": TUTOR_CLICKHOUSE_USER if tutor else CLICKHOUSE_USER,
                "ASPECTS_SINK_CLICKHOUSE_PASSWORD": TUTOR_CLICKHOUSE_PASSWORD if tutor else CLICKHOUSE_PASSWORD,
                "PYTHONUNBUFFERED": "1",
                # A queue of its own, so devstacks sharing a Redis broker never take each other's tasks.
                "DEVSTACK_CELERY_QUEUE": f"devstack-{hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]}",
            }
        )
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.pop("DEVSTACK_BROKER_URL", None)
        if self.broker_url:
            env["DEVSTACK_BROKER_URL"] = self.broker_url
        if self.database == "mysql":
            env["DEVSTACK_DB"] = "mysql"
            if self.mysql_database:
                env["DEVSTACK_MYSQL_DB"] = self.mysql_database
        else:
            env.pop("DEVSTACK_DB", None)
        return env

    # -- running platform code -------------------------------------------------------------------

    def manage(
        self, service: str, *args: str, timeout: float = 600, check: bool = True, admin: bool = False
    ) -> subprocess.CompletedProcess:
        """Run ``manage.py <service> <args>`` in its own process and return what it printed (see :meth:`env`)."""
        command = [sys.executable, str(DEVSTACK_DIR / "manage.py"), service, *args]
        result = subprocess.run(
            command, env=self.env(admin=admin), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command[2:])} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def run_python(self, service: str, code: str, timeout: float = 600) -> Any:
        """
        Run Python in an LMS or CMS process (Django set up) and return what it assigned to ``result``.

        The code runs as a platform request would: signals fire, receivers run, and the outbox
        entries commit with the change.
        """
        output = self.manage(service, "shell", "-c", shell_code(code), timeout=timeout).stdout
        return read_result(output)

    def run_function(self, service: str, function: Callable | str, /, timeout: float = 600, **kwargs: Any) -> Any:
        """
        Call a function in an LMS or CMS process (Django set up) and return what it returned.

        ``function`` is a module-level function of an importable module (the devstack's and the
        repository's are: see :meth:`env`), or its name as ``"package.module:function"``. ``kwargs``
        travel as JSON, and so does the result. Like :meth:`run_python`, it runs as a request would.
        """
        return self.run_python(service, function_call_code(function, **kwargs), timeout=timeout)

    def platform_process(self, service: str = "lms") -> PlatformProcess:
        """A long-lived LMS or CMS process that runs function after function (see :class:`PlatformProcess`)."""
        return PlatformProcess(self, service)

    # -- workers ---------------------------------------------------------------------------------

    def start_worker(self, service: str = "lms", *, concurrency: int = 1, beat: bool = False) -> subprocess.Popen:
        """Start a Celery worker process (optionally with the beat scheduler inside)."""
        log_path = self.state_dir / f"worker-{len(self.workers)}.log"
        command = [
            sys.executable, "-m", "celery", "-A", f"{service}.celery", "worker",
            "--pool", "solo" if concurrency == 1 else "prefork", "--concurrency", str(concurrency),
            "--loglevel", "info", "--without-gossip", "--without-mingle",
            "--hostname", f"worker{len(self.workers)}@%h",
        ]  # fmt: skip
        if beat:
            command += ["--beat", "--schedule", str(self.state_dir / "celerybeat-schedule")]
        env = self.env()
        env["DJANGO_SETTINGS_MODULE"] = f"{service}.envs.devstack"
        log = open(log_path, "ab")  # noqa: SIM115 - the worker writes to it until stopped
        since = log.tell()
        # A session of its own: kill_worker kills it whole, the embedded beat's child process included.
        worker = subprocess.Popen(
            command, cwd=DEVSTACK_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        worker.log_path = log_path  # type: ignore[attr-defined]
        self.workers.append(worker)
        self._wait_for_worker(worker, log_path, since=since)
        return worker

    @staticmethod
    def _wait_for_worker(worker: subprocess.Popen, log_path: Path, timeout: float = 180, since: int = 0) -> None:
        """
        Wait until the worker logs that it is ready, in what it wrote from byte ``since`` of its log on (a log
        appended to by a worker started before in the same place says so already).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited {worker.returncode}:\n{log_path.read_text()[-4000:]}")
            if b" ready." in log_path.read_bytes()[since:]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{log_path.read_text()[-4000:]}")

    def stop_worker(self, worker: subprocess.Popen, timeout: float = 20) -> None:
        """Stop a worker (it finishes its current task) or a web server gracefully, killing it if it does not stop."""
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_worker(worker)
        self._forget(worker)

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """
        SIGKILL to the worker (or web server) and every process it started (its pool, its embedded beat), as when
        a pod or a host dies: nothing finishes, acknowledges or gives anything back, and nothing is left running.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        self._forget(worker)

    def _forget(self, worker: subprocess.Popen) -> None:
        for running in (self.workers, self.web_servers):
            if worker in running:
                running.remove(worker)

    # -- web -----------------------------------------------------------------------------------------

    def start_web(self, service: str = "lms") -> str:
        """
        Serve the service over HTTP on a free loopback port (Django's server; static files too, as the admin needs
        them) and return its base URL. Production runs gunicorn; what a page shows does not depend on it.
        """
        port = _free_port()
        log_path = self.state_dir / f"web-{service}-{port}.log"
        command = [
            sys.executable, str(DEVSTACK_DIR / "manage.py"), service,
            "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}",
        ]  # fmt: skip
        log = open(log_path, "ab")  # noqa: SIM115 - the server writes to it until stopped
        server = subprocess.Popen(command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server.log_path = log_path  # type: ignore[attr-defined]
        self.web_servers.append(server)
        deadline = time.monotonic() + 60
        while not _answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                self.stop_worker(server)
                raise RuntimeError(f"{service} web server did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        return f"http://127.0.0.1:{port}"

    # -- ClickHouse ------------------------------------------------------------------------------

    def clickhouse_client(self, database: str = "event_sink"):
        """A clickhouse-connect client on the endpoint (for checks, not for the plugin)."""
        import clickhouse_connect

        return clickhouse_connect.get_client(
            host="127.0.0.1",
            port=self.clickhouse.port,
            username=CLICKHOUSE_USER,
            password=CLICKHOUSE_PASSWORD,
            database=database,
        )

    def wait_for(self, predicate, timeout: float = 60, interval: float = 0.25, what: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
