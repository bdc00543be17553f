"""
The xAPI route end to end: learners' tracking events emitted with event-tracking's tracker in LMS
processes, transformed by event-routing-backends, drained by a real Celery worker into the devstack's
ClickHouse; nothing lost while ClickHouse is down, nothing doubled when events are sent again.
"""

from __future__ import annotations

import pytest
from xapi_support import statement_counts

LEARNERS_DO_A_COURSE = """
import copy, pickle
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
from xmodule.modulestore.course_builder import create_course

course = create_course("XapiX", "COURSE", "2026", "xAPI end to end", blocks=60)
learners = [create_user(f"COURSE_{i}", f"COURSE_{i}@example.com", name=f"Learner {i}") for i in range(LEARNERS)]
with activity.recording() as events:
    emitted = activity.emit_rounds(str(course), [learner.username for learner in learners], rounds=ROUNDS)
with open(EVENTS_FILE, "wb") as events_file:
    pickle.dump(events, events_file)
result = {
    "course": str(course),
    "emitted": emitted,
    "erb_ids": [statement["id"] for statement in XApiProcessor()(copy.deepcopy(events))],
    "users": {learner.username: learner.id for learner in learners},
}
"""

SEND_AGAIN = """
import pickle
from devstack_tools import learner_activity as activity
with open(EVENTS_FILE, "rb") as events_file:
    activity.send_again(pickle.load(events_file))
"""


def learners_do_a_course(devstack, name: str, *, learners: int, rounds: int) -> dict:
    code = LEARNERS_DO_A_COURSE.replace("COURSE", name).replace("LEARNERS", str(learners))
    code = code.replace("ROUNDS", str(rounds)).replace("EVENTS_FILE", repr(str(devstack.state_dir / f"{name}.pickle")))
    return devstack.run_python("lms", code)


def statements_of(client, course: str, *, final: bool = False) -> list[tuple[str, str]]:
    """``(event_id, statement id in the JSON)`` of every row whose statement names the course."""
    table = f"xapi.xapi_events_all{' FINAL' if final else ''}"
    return client.query(
        f"SELECT toString(event_id), JSONExtractString(event, 'id') FROM {table}"
        " WHERE position(event, {c:String}) > 0",
        parameters={"c": course},
    ).result_rows


def wait_for_statements(devstack, client, course: str, count: int, *, final: bool = False, timeout: float = 60):
    """The course's statements, once at least ``count`` of them are in ClickHouse."""

    def arrived():
        rows = statements_of(client, course, final=final)
        return rows if len(rows) >= count else None

    return devstack.wait_for(arrived, timeout=timeout, what=f"{count} statements of {course}")


@pytest.fixture(scope="module")
def client(devstack):
    return devstack.clickhouse_client()


def test_learner_activity_lands_as_erbs_statements_once_each_and_joins_to_users(devstack, client):
    done = learners_do_a_course(devstack, "Activity", learners=3, rounds=2)
    assert done["emitted"] == len(done["erb_ids"]) == 30  # enrollment, navigation, video, problem, grade

    rows = wait_for_statements(devstack, client, done["course"], 30)
    assert sorted(event_id for event_id, _ in rows) == sorted(done["erb_ids"])  # ERB's ids, each once
    assert all(event_id == json_id for event_id, json_id in rows)

    devstack.run_python("lms", SEND_AGAIN.replace("EVENTS_FILE", repr(str(devstack.state_dir / "Activity.pickle"))))
    wait_for_statements(devstack, client, done["course"], 60)  # the events sent again
    assert len(statements_of(client, done["course"], final=True)) == 30  # no new row after FINAL

    # The actor's account name is the user's xAPI external id: Aspects' join to users finds every learner.
    devstack.wait_for(
        lambda: client.command("SELECT count() FROM event_sink.external_id FINAL WHERE external_id_type = 'xapi'") >= 3,
        what="the learners' external ids",
    )
    joined = client.query(
        """
        SELECT x.event_id, e.user_id, e.username
        FROM (SELECT * FROM xapi.xapi_events_all FINAL WHERE position(event, {course:String}) > 0) AS x
        INNER JOIN (SELECT * FROM event_sink.external_id FINAL WHERE external_id_type = 'xapi') AS e
            ON JSONExtractString(x.event, 'actor', 'account', 'name') = toString(e.external_user_id)
        """,
        parameters={"course": done["course"]},
    ).result_rows
    assert len(joined) == 30
    assert {(username, user_id) for _, user_id, username in joined} == set(done["users"].items())


def test_clickhouse_outage_delays_statements_and_loses_none(devstack, client):
    devstack.clickhouse.stop()
    try:
        done = learners_do_a_course(devstack, "Outage", learners=4, rounds=50)  # 1,000 events, 1,000 statements
        assert done["emitted"] == 1000
        assert statement_counts(devstack)["pending"] >= 1000  # the LMS kept working; statements wait
    finally:
        devstack.clickhouse.restart()
    rows = wait_for_statements(devstack, client, done["course"], 1000, final=True, timeout=90)

    assert sorted(event_id for event_id, _ in rows) == sorted(done["erb_ids"])
    assert statement_counts(devstack) == {"pending": 0, "dead": 0}
