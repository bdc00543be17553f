"""
``aspects_sink_xapi_history``: tracking logs (plain and gzip) in a bucket of moto's S3 server into the raw
xAPI table with ERB's transformers, two worker processes side by side; the whole pod killed halfway, it
resumes from its checkpoints in the LMS database; history overlapping what the live route already sent, or
imported twice, adds no row after FINAL.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import subprocess
import sys
import uuid

import psutil
import pytest
from processes import DEVSTACK_DIR

from tests.support import scenarios
from tests.support.object_storage import rotated_logs

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini

HISTORY_TABLE = "xapi_history"


def statement_ids(client, table: str, course: str, *, final: bool = False) -> list[str]:
    return [
        row[0]
        for row in client.query(
            f"SELECT toString(event_id) FROM xapi.{table}{' FINAL' if final else ''}"
            " WHERE position(event, {c:String}) > 0",
            parameters={"c": course},
        ).result_rows
    ]


def test_history_resumes_after_a_kill_and_collapses_into_the_live_statements(devstack, s3_environment, tmp_path):
    plain, gzipped = tmp_path / "tracking.log", tmp_path / "tracking.log.1.gz"
    done = devstack.run_function(
        "lms", scenarios.live_activity_and_its_tracking_logs, plain=str(plain), gzipped=str(gzipped)
    )
    assert done["emitted"] == 200
    lines = plain.read_text().splitlines() + gzip.decompress(gzipped.read_bytes()).decode().splitlines()
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    s3_environment.bucket_of_logs(bucket, rotated_logs(lines, "lms/", [f"2026-01-0{day}" for day in range(1, 5)]))
    client = devstack.clickhouse_client()
    live = devstack.wait_for(
        lambda: (ids := statement_ids(client, "xapi_events_all", done["course"])) and len(ids) >= 200 and ids,
        what="the live statements",
    )

    devstack.update_settings(ASPECTS_SINK_XAPI_TABLE=HISTORY_TABLE)  # history into a table of its own
    try:
        devstack.manage("lms", "aspects_sink_schema")
        history = ("aspects_sink_xapi_history", f"s3://{bucket}/lms/", "--workers", "2", "--batch_size", "10")
        # Two seconds between batches: however slow this machine, it is killed long before it could finish.
        slow = subprocess.Popen(
            [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", *history,
             "--sleep_between_batches_secs", "2", "--no-progress"],
            env=devstack.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        devstack.wait_for(lambda: len(statement_ids(client, HISTORY_TABLE, done["course"])) >= 40)
        os.killpg(slow.pid, signal.SIGKILL)  # the pod dies: the command and its workers
        slow.wait()
        assert 40 <= len(statement_ids(client, HISTORY_TABLE, done["course"])) < 200

        resumed = devstack.manage("lms", *history, "--resume").stdout
        assert "4 logs" in resumed and " 201 lines read" not in resumed  # from the checkpoints on
        rows = statement_ids(client, HISTORY_TABLE, done["course"])
        assert len(rows) <= 200 + 2 * 10  # at most the batch in flight in each worker at the kill was sent twice
        assert sorted(statement_ids(client, HISTORY_TABLE, done["course"], final=True)) == sorted(live)

        again = devstack.manage("lms", *history).stdout  # the whole history again, from the start
        assert "201 lines read: 200 statements written" in again  # the registration event is no xAPI event
        # every event of the round has a recipe: ERB makes the first of each of its 5 transformers in each worker
        made = re.search(r"Of the statements made, (\d+) were assembled from ERB's parts, (\d+) made by ERB", again)
        assert made and int(made[1]) + int(made[2]) == 200 and 0 < int(made[2]) <= 2 * 5
        assert len(statement_ids(client, HISTORY_TABLE, done["course"], final=True)) == 200
    finally:
        devstack.update_settings(ASPECTS_SINK_XAPI_TABLE="xapi_events_all")


def test_a_sigterm_to_the_command_stops_its_workers_too(devstack, s3_environment, tmp_path):
    """
    ``kill PID`` (or a container's stop, sent to its first process) reaches the command alone: it stops as
    Ctrl-C stops it, its workers with it, and says how to go on; no worker goes on writing checkpoints.
    """
    lines = devstack.run_function("lms", scenarios.a_learners_tracking_log_lines)
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    s3_environment.bucket_of_logs(bucket, rotated_logs(lines, "lms/", [f"2026-01-0{day}" for day in range(1, 5)]))
    command = subprocess.Popen(
        [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", "aspects_sink_xapi_history", f"s3://{bucket}/lms/",
         "--workers", "2", "--batch_size", "1", "--sleep_between_batches_secs", "30", "--no-progress"],
        env=devstack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        parent = psutil.Process(command.pid)
        workers = devstack.wait_for(lambda: len(parent.children()) == 2 and parent.children(), what="two workers")
        command.send_signal(signal.SIGTERM)
        out, err = command.communicate(timeout=60)
        assert command.returncode == 1 and "interrupted. Run again with --resume to continue." in err
        assert "lines read" in out  # the summary of what was done
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command.pid, signal.SIGKILL)


def test_a_stopped_import_with_thousands_of_logs_left_exits(devstack, tmp_path):
    # Each worker stops at its first log; the logs never handed out must not keep the process from exiting.
    done = devstack.run_function(
        "lms", scenarios.history_stopped_by_clickhouse_down, timeout=180, folder=str(tmp_path), logs=5000
    )
    assert "127.0.0.1:9" in done["stopped"]
