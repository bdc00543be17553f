"""
The xAPI route end to end: learners' tracking events emitted with event-tracking's tracker in LMS
processes, transformed by event-routing-backends, drained by a real Celery worker into the devstack's
ClickHouse; nothing lost while ClickHouse is down, nothing doubled when events are sent again.
"""

from __future__ import annotations

import pytest

from tests.support.xapi import learners_do_a_course, send_again, statement_counts, statements_of, wait_for_statements

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini


@pytest.fixture(scope="module")
def client(devstack):
    return devstack.clickhouse_client()


def test_learner_activity_lands_as_erbs_statements_once_each_and_joins_to_users(devstack, client):
    done = learners_do_a_course(devstack, "Activity", learners=3, rounds=2)
    assert done["emitted"] == len(done["erb_ids"]) == 30  # enrollment, navigation, video, problem, grade

    rows = wait_for_statements(devstack, client, done["course"], 30)
    assert sorted(event_id for event_id, _ in rows) == sorted(done["erb_ids"])  # ERB's ids, each once
    assert all(event_id == json_id for event_id, json_id in rows)

    send_again(devstack, "Activity")
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
