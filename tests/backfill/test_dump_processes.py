"""
The command as operators run it, in processes of its own against one SQLite file and one ClickHouse:
killed mid-run and resumed, and fanned out to a real Celery worker.
"""

import itertools
import re
import signal
import sqlite3
import subprocess
import sys

import pytest
from processes import DEVSTACK_DIR, Devstack

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini

USERS = 300
ENROLLMENTS = 500


@pytest.fixture(scope="module")
def devstack(tmp_path_factory):
    """A migrated devstack with its own ClickHouse endpoint and schema, seeded in bulk as an old site would be."""
    stack = Devstack(tmp_path_factory.mktemp("backfill-devstack"), settings={"ASPECTS_ENABLE_PII": True})
    stack.start()
    try:
        stack.manage("lms", "seed_devstack", "--users", str(USERS), "--courses", "2", "--enrollments", str(ENROLLMENTS))
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def devstack_clickhouse_client(devstack):
    client = devstack.clickhouse_client()
    yield client
    client.close()


def checkpoints(devstack, sink):
    """The sink's checkpoint rows, read straight from the LMS's SQLite file."""
    with sqlite3.connect(f"file:{devstack.state_dir / 'db.sqlite3'}?mode=ro", uri=True, timeout=5) as database:
        return database.execute(
            "SELECT state, rows, last_acknowledged, range_start, range_end FROM aspects_sink_dumpcheckpoint "
            "WHERE sink = ? ORDER BY id",
            (sink,),
        ).fetchall()


def test_a_killed_run_resumes_without_sending_acknowledged_batches_again(devstack, devstack_clickhouse_client):
    devstack_clickhouse_client.command("SYSTEM STOP MERGES event_sink.user_profile")  # every row sent stays countable
    command = [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", "dump_data_to_clickhouse", "--object"]
    # A second between batches: however slow this machine, the run is killed long before it could finish.
    slow_run = subprocess.Popen(
        [*command, "user_profile", "--batch_size", "20", "--sleep_time", "1"],
        env=devstack.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        devstack.wait_for(
            lambda: checkpoints(devstack, "user_profile") and checkpoints(devstack, "user_profile")[0][1] >= 40,
            timeout=60,
            interval=0.02,
            what="two acknowledged batches",
        )
    finally:
        slow_run.send_signal(signal.SIGKILL)  # a killed pod: no clean-up of any kind
        slow_run.wait()

    ((state, acknowledged, last_key, *_),) = checkpoints(devstack, "user_profile")
    sent_before = int(devstack_clickhouse_client.command("SELECT count() FROM event_sink.user_profile"))
    assert state == "running"
    assert 40 <= acknowledged < USERS
    assert sent_before - acknowledged in (0, 20)  # at most the batch in flight at the kill went unacknowledged

    result = devstack.manage(
        "lms", "dump_data_to_clickhouse", "--object", "user_profile", "--resume", "--sleep_time", "0"
    )

    assert f"user_profile: {USERS:,} to go, {acknowledged:,} done before" in result.stdout
    acknowledged_rows = "SELECT count() FROM event_sink.user_profile WHERE id <= {last:Int32}"
    assert (
        int(devstack_clickhouse_client.command(acknowledged_rows, parameters={"last": int(last_key)})) == acknowledged
    )
    # nothing sent twice: a batch that went in unacknowledged at the kill is read again and found unchanged
    assert int(devstack_clickhouse_client.command("SELECT count() FROM event_sink.user_profile")) == USERS
    assert int(devstack_clickhouse_client.command("SELECT count() FROM event_sink.user_profile FINAL")) == USERS
    assert checkpoints(devstack, "user_profile")[0][:2] == ("done", USERS)
    devstack_clickhouse_client.command("SYSTEM START MERGES event_sink.user_profile")


def test_workers_dump_the_ranges_of_a_sink_in_parallel(devstack, devstack_clickhouse_client):
    worker = devstack.start_worker(concurrency=3)
    try:
        result = devstack.manage(
            "lms",
            "dump_data_to_clickhouse",
            "--object",
            "course_enrollment",
            "--workers",
            "3",
            "--batch_size",
            "50",
            "--sleep_time",
            "0",
            "--worker_timeout",
            "30",
        )
    finally:
        devstack.stop_worker(worker, timeout=1)  # its work is done: no need to wait for a warm shutdown

    # the worker dumped the three ranges (the command gives up on a range no worker takes within --worker_timeout)
    log = worker.log_path.read_text()
    assert len(re.findall(r"dump_backfill_range\[[^\]]+\] succeeded", log)) == 3, log[-4000:]
    ranges = checkpoints(devstack, "course_enrollment")
    assert [state for state, *_ in ranges] == ["done"] * 3
    assert sum(rows for _, rows, *_ in ranges) == ENROLLMENTS
    bounds = [(start, end) for *_, start, end in ranges]
    assert bounds[0][0] == "" and bounds[-1][1] == ""
    assert all(previous[1] == following[0] for previous, following in itertools.pairwise(bounds))
    assert (
        int(devstack_clickhouse_client.command("SELECT count() FROM event_sink.course_enrollment FINAL")) == ENROLLMENTS
    )
    assert f"course_enrollment  {ENROLLMENTS:>4}" in result.stdout.replace(",", "")
