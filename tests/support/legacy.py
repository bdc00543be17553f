"""
platform-plugin-aspects as a Tutor site runs it today, for the switch-over test: the LMS and CMS code and the Celery
worker of the devstack, run from the plugin's own virtualenv (built on first use and cached under ``.benchmarks/``
by its requirements, as the benchmarks build it: ``benchmarks/legacy_live.py``), writing into the ``event_sink``
tables Aspects' migrations created.

The scenarios of ``tests.support.scenarios`` run in its processes too (as the module ``scenarios``: the repository's
root stays off their path, so that aspects-sink is never loaded beside the plugin).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from processes import REPO_ROOT, Devstack, function_call_code, read_result, shell_code

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from backfill import Command
from legacy_live import LegacyPlatform, legacy_python

SUPPORT_DIR = Path(__file__).resolve().parent


class SiteBeforeTheSwitch(LegacyPlatform):
    """The devstack with platform-plugin-aspects in its processes, writing into the site's ``event_sink``."""

    database = "event_sink"

    def __init__(self, devstack: Devstack):
        super().__init__(devstack, legacy_python())

    def _command(self, service: str, *args: str) -> Command:
        command = super()._command(service, *args)
        env = {
            **command.env,
            "ASPECTS_SINK_CLICKHOUSE_DATABASE": self.database,
            "PYTHONPATH": f"{command.env['PYTHONPATH']}:{SUPPORT_DIR}",
        }
        return Command(command.argv, env, command.cwd)

    def manage(self, service: str, *args: str) -> str:
        """A Django management command in a process of this platform; what it printed."""
        command = self.django(service, *args)
        result = subprocess.run(
            command.argv, env=command.env, cwd=command.cwd, capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(args)[:80]} in the old plugin's {service} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def run_function(self, service: str, function, /, **kwargs: Any) -> Any:
        """Call a function of ``tests.support.scenarios`` in a process of this platform; what it returned."""
        code = shell_code(function_call_code(f"scenarios:{function.__qualname__}", **kwargs))
        return read_result(self.manage(service, "shell", "-c", code))

    def stop_delivery(self) -> None:
        """Stop the plugin's worker: the site no longer runs it."""
        for worker in [worker for worker in self.devstack.workers if "legacy@" in " ".join(worker.args)]:
            self.devstack.stop_worker(worker)
