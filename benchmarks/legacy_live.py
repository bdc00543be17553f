"""
The existing plugin (platform-plugin-aspects) on a devstack of its own, as the live-path benchmark drives it.

Its LMS and CMS processes and its Celery worker run from the virtualenv the backfill benchmark builds
(``.benchmarks/legacy-py3.X``), with ``legacy_settings`` and the environment the backfill benchmark gives
its dumps, so they share the devstack's database, broker and ClickHouse endpoint and write to
``event_sink_legacy``. Its receivers queue one Celery task per change; each task inserts one row.
"""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

from backfill import LEGACY_DATABASE, LEGACY_VERSION, Command, Plugins, create_legacy_tables, installer, virtualenv
from processes import Devstack


def legacy_python() -> str:
    """
    The existing plugin's virtualenv (created on first use, as the backfill benchmark does), topped up with
    ``packaging``: kombu's Redis transport imports it, and edx-platform's environment has it.
    """
    python = str(virtualenv("legacy", [f"platform-plugin-aspects=={LEGACY_VERSION}"]))
    if subprocess.run([python, "-c", "import packaging"], capture_output=True, check=False).returncode:
        subprocess.run([*installer(Path(python)), f"packaging=={version('packaging')}"], check=True)
    return python


class LegacyPlatform:
    """The devstack with the existing plugin loaded in every process, instead of aspects-sink."""

    name = f"platform-plugin-aspects {LEGACY_VERSION}"
    database = LEGACY_DATABASE
    # One task per change: what is still queued when the load's measurement stops would keep the worker busy
    # long after it, and the course publish measured next would wait behind it. Dropped instead.
    purge_after_load = True

    def __init__(self, devstack: Devstack, python: str):
        self.devstack = devstack
        self.python = python
        self.worker_log = devstack.state_dir / "worker-legacy.log"
        self.worker: subprocess.Popen | None = None

    def _command(self, service: str, *args: str) -> Command:
        """``python <args>`` in the existing plugin's environment, as ``service`` (lms or cms)."""
        dump = Plugins(self.devstack, ours_python=None, legacy_python=self.python).legacy("user_profile")
        return Command([self.python, *args], {**dump.env, "SERVICE_VARIANT": service}, dump.cwd)

    def django(self, service: str, *args: str) -> Command:
        """A Django management command in an LMS or CMS process of this platform."""
        return self._command(service, "-m", "django", *args)

    def celery(self, *args: str) -> Command:
        """A Celery command on the LMS's app (run from ``devstack/``, as every command here is)."""
        return self._command("lms", "-m", "celery", "-A", "lms.celery", *args)

    def start_delivery(self) -> None:
        """
        Create Aspects' own tables (if they do not exist yet), then start the existing plugin's worker: one
        process, one task at a time (``--pool solo``), like the worker aspects-sink gets. It joins the devstack's
        workers, so stopping the devstack stops it.
        """
        create_legacy_tables(self.devstack)
        command = self.celery(
            "worker", "--pool", "solo", "--loglevel", "info", "--without-gossip", "--without-mingle",
            "--hostname", "legacy@%h",
        )  # fmt: skip
        with self.worker_log.open("ab") as log:
            since = log.tell()
            worker = subprocess.Popen(
                command.argv, cwd=command.cwd, env=command.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.devstack.workers.append(worker)
        Devstack._wait_for_worker(worker, self.worker_log, since=since)
        self.worker = worker

    def stop_delivery(self) -> None:
        """Stop the worker (it finishes its task first); its queued tasks wait in the broker."""
        self.devstack.stop_worker(self.worker)
