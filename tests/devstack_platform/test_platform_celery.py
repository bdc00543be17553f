"""One Celery app for LMS and CMS, configured from Django settings, and a real worker on the embedded broker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from cms.celery import APP as CMS_APP
from django.conf import settings
from lms.celery import APP
from processes import Devstack

DEVSTACK_DIR = Path(__file__).resolve().parents[2] / "devstack"


def test_lms_and_cms_share_one_app_configured_from_django_settings():
    assert CMS_APP is APP
    assert APP.conf.broker_url == settings.CELERY_BROKER_URL
    assert APP.conf.task_ignore_result is True
    assert APP.conf.task_always_eager is False


def test_tasks_of_installed_apps_are_discovered():
    APP.loader.import_default_modules()

    assert {"eventtracking.tasks.send_event", "event_routing_backends.tasks.dispatch_event"} <= set(APP.tasks)


@pytest.mark.slow
def test_a_worker_process_runs_tasks_queued_by_this_process(tmp_path):
    log = tmp_path / "worker.log"
    queue = f"devstack-platform-test-{os.getpid()}"  # only this test's task: nothing else queued is run
    command = ["celery", "-A", "lms.celery", "worker", "--pool", "solo", "-Q", queue, "-l", "info", "-f", str(log)]
    worker = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=DEVSTACK_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "lms.envs.devstack"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        queued = APP.send_task("celery.accumulate", args=(1, 2), queue=queue)
        deadline = time.monotonic() + 120  # only a hang fails
        while f"{queued.id}] succeeded" not in (log.read_text() if log.exists() else ""):
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker did not run the task"
            time.sleep(0.2)
    finally:
        worker.kill()  # a warm shutdown takes seconds, and nothing here needs one
        worker.wait(timeout=30)


@pytest.mark.slow
def test_a_killed_worker_takes_its_embedded_beat_along(tmp_path):
    # A killed pod leaves nothing running; a worker SIGKILLed alone would leave its beat sending sweeps forever.
    devstack = Devstack(tmp_path)
    devstack.update_settings()  # its ENV_TOKENS file, without ClickHouse or a database: the worker only starts
    worker = devstack.start_worker(beat=True)
    deadline = time.monotonic() + 120  # only a hang fails
    while not (family := psutil.Process(worker.pid).children(recursive=True)):
        assert time.monotonic() < deadline, "the embedded beat did not start"
        time.sleep(0.2)

    devstack.kill_worker(worker)

    assert worker.returncode == -9 and devstack.workers == []
    _, alive = psutil.wait_procs(family, timeout=30)
    assert alive == []
