"""
``aspects_sink_xapi_history``: tracking-log files (plain and gzip) into the raw xAPI table with ERB's
transformers; killed halfway, it resumes from its checkpoint; history overlapping what the live route
already sent, or imported twice, adds no row after FINAL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from processes import DEVSTACK_DIR

from tests.support import scenarios

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


def test_history_resumes_after_a_kill_and_collapses_into_the_live_statements(devstack, tmp_path):
    plain, gzipped, checkpoint = tmp_path / "tracking.log", tmp_path / "tracking.log.1.gz", tmp_path / "checkpoint.json"
    done = devstack.run_function(
        "lms", scenarios.live_activity_and_its_tracking_logs, plain=str(plain), gzipped=str(gzipped)
    )
    assert done["emitted"] == 200
    client = devstack.clickhouse_client()
    live = devstack.wait_for(
        lambda: (ids := statement_ids(client, "xapi_events_all", done["course"])) and len(ids) >= 200 and ids,
        what="the live statements",
    )

    devstack.update_settings(ASPECTS_SINK_XAPI_TABLE=HISTORY_TABLE)  # history into a table of its own
    try:
        devstack.manage("lms", "aspects_sink_schema")
        history = ("aspects_sink_xapi_history", str(plain), str(gzipped), "--checkpoint", str(checkpoint))
        # Two seconds between batches: however slow this machine, it is killed long before it could finish.
        slow = subprocess.Popen(
            [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", *history,
             "--batch_size", "20", "--sleep_between_batches_secs", "2", "--no-progress"],
            env=devstack.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        devstack.wait_for(lambda: checkpoint.exists() and sum(json.loads(checkpoint.read_text()).values()) >= 40)
        slow.send_signal(signal.SIGKILL)
        slow.wait()
        lines_done = sum(json.loads(checkpoint.read_text()).values())
        assert 40 <= len(statement_ids(client, HISTORY_TABLE, done["course"])) < 200

        resumed = devstack.manage("lms", *history, "--resume", "--batch_size", "20").stdout
        assert f"{201 - lines_done} lines read" in resumed  # from the checkpoint on
        rows = statement_ids(client, HISTORY_TABLE, done["course"])
        assert len(rows) <= 200 + 20  # at most the batch in flight at the kill was sent twice
        assert sorted(statement_ids(client, HISTORY_TABLE, done["course"], final=True)) == sorted(live)

        again = devstack.manage("lms", *history).stdout  # the whole history again, from the start
        assert "201 lines read: 200 statements written" in again  # the registration event is no xAPI event
        assert len(statement_ids(client, HISTORY_TABLE, done["course"], final=True)) == 200
    finally:
        devstack.update_settings(ASPECTS_SINK_XAPI_TABLE="xapi_events_all")
