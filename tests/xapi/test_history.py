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

LIVE_ACTIVITY_AND_ITS_TRACKING_LOGS = """
import gzip
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from xmodule.modulestore.course_builder import create_course

course = create_course("HistoryX", "Logs", "2026", "History", blocks=60)
learners = [create_user(f"history{i}", f"history{i}@example.com", name=f"History {i}") for i in range(4)]
with activity.recording() as events:
    emitted = activity.emit_rounds(str(course), [learner.username for learner in learners], rounds=10)
lines = [activity.tracking_log_line(event) + "\\n" for event in events]
lines.insert(7, '{"name": "edx.bi.user.account.registered", "event": {}, "time": "2026-01-01T00:00:00+00:00"}\\n')
half = len(lines) // 2
with open(PLAIN, "w") as log:
    log.writelines(lines[:half])
with gzip.open(GZIPPED, "wt") as log:
    log.writelines(lines[half:])
result = {"course": str(course), "emitted": emitted}
"""

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
    code = LIVE_ACTIVITY_AND_ITS_TRACKING_LOGS.replace("PLAIN", repr(str(plain))).replace("GZIPPED", repr(str(gzipped)))
    done = devstack.run_python("lms", code)
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
        slow = subprocess.Popen(
            [sys.executable, str(DEVSTACK_DIR / "manage.py"), "lms", *history,
             "--batch_size", "20", "--sleep_between_batches_secs", "0.5", "--no-progress"],
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
