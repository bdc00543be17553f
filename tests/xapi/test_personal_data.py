"""
xAPI and personal data: statements name their actor by the anonymous external id, whatever the PII switch;
ERB configured to name actors by email or its hash refuses to start; statements of retired users are left out;
the retirement check finds a statement naming a retired user and ``--repair`` deletes it; a retired learner's
tracking events waiting in the LMS (parked or not) leave it.
"""

from __future__ import annotations

import io
import json
import uuid

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from event_routing_backends.helpers import get_anonymous_user_id
from xmodule.modulestore.course_builder import create_course

from aspects_sink import delivery, retirement
from aspects_sink.models import XapiStatement
from aspects_sink.sinks.xapi_statements import XapiStatementSink, raw_table
from aspects_sink.xapi import routing


@pytest.fixture
def course(db):
    return activity.CourseBlocks.of(create_course("PiiX", "Personal", "2026", "Personal data", blocks=40))


@pytest.fixture
def learner(db):
    # ERB keeps anonymous ids in an lru_cache by user id, and ids are used again after a test's rollback.
    get_anonymous_user_id.cache_clear()
    username = f"pii{uuid.uuid4().hex[:8]}"
    return create_user(username, f"{username}@example.com", name="Pia Personal")


def statements(transport) -> list[dict]:
    table = raw_table()
    rows = transport.rows(f"SELECT event FROM {table.database}.{table.name}")
    return [json.loads(event) for (event,) in rows]


def of_actor(transport, actor: str) -> list[dict]:
    return [
        statement for statement in statements(transport) if statement["actor"].get("account", {}).get("name") == actor
    ]


def drain(transport):
    return delivery.drain(XapiStatementSink.name, transport, time_budget=float("inf"))


@pytest.mark.parametrize("identifier", ["mbox", "mbox_sha1sum", "openid"])
def test_an_actor_named_by_a_personal_identifier_refuses_to_start(identifier, settings):
    settings.XAPI_AGENT_IFI_TYPE = identifier
    with pytest.raises(ImproperlyConfigured, match=rf"XAPI_AGENT_IFI_TYPE is '{identifier}'.*external_id"):
        routing.check_actor_is_anonymous(settings)


def test_the_lms_refuses_to_start_with_mbox_actors(devstack):
    devstack.update_settings(XAPI_AGENT_IFI_TYPE="mbox")
    try:
        result = devstack.manage("lms", "check", check=False)
    finally:
        devstack.settings.pop("XAPI_AGENT_IFI_TYPE")
        devstack.update_settings()
    assert result.returncode != 0
    assert "XAPI_AGENT_IFI_TYPE is 'mbox'" in result.stderr


@pytest.mark.parametrize("pii_on", [False, True], ids=["pii-off", "pii-on"])
def test_anonymous_actors_carry_no_personal_value(devstack_clickhouse, course, learner, settings, pii_on):
    settings.ASPECTS_ENABLE_PII = pii_on
    settings.XAPI_AGENT_IFI_TYPE = "external_id"
    routing.check_actor_is_anonymous(settings)
    activity.emit(learner, course, activity.round_of_events(learner, course))
    drain(devstack_clickhouse)
    sent = statements(devstack_clickhouse)
    assert sent
    text = json.dumps(sent)
    for value in (learner.username, learner.email, "Pia Personal"):
        assert value not in text
    assert all(set(statement["actor"]) <= {"objectType", "account"} for statement in sent)


def test_statements_of_a_retired_user_are_left_out_and_the_check_repairs_planted_ones(
    devstack_clickhouse, course, learner
):
    activity.emit(learner, course, activity.round_of_events(learner, course))
    assert XapiStatement.objects.exists()
    actor = get_anonymous_user_id(learner.username, "XAPI")  # the learner's statements' actor
    retirement.record([learner.id])  # before the drain: the statements recorded meanwhile are not sent
    report = drain(devstack_clickhouse)
    assert retirement.xapi_actor_ids([learner.id]) == [actor]
    assert report.delivered and of_actor(devstack_clickhouse, actor) == []
    table = raw_table()
    account = {"homePage": "http://lms", "name": actor}
    planted = {"id": str(uuid.uuid4()), "actor": {"mbox": f"mailto:{learner.email}", "account": account}}
    devstack_clickhouse.command(
        f"INSERT INTO {table.database}.{table.name} (event_id, emission_time, event) "
        "VALUES ({id:UUID}, '2026-01-01 00:00:00', {event:String})",
        {"id": planted["id"], "event": json.dumps(planted)},
    )
    with pytest.raises(CommandError, match=actor):
        call_command("aspects_sink_retirement_check", stdout=io.StringIO())
    output = io.StringIO()
    call_command("aspects_sink_retirement_check", "--repair", stdout=output)
    assert "1 xAPI actors" in output.getvalue()
    assert of_actor(devstack_clickhouse, actor) == []


def waiting_events_of(user) -> list[XapiStatement]:
    """The tracking events the LMS holds for the xAPI route that carry this learner's username."""
    return [entry for entry in XapiStatement.objects.all() if f'"username":"{user.username}"' in entry.statement]


def test_a_retired_learners_parked_events_leave_the_lms(devstack_clickhouse, course, learner, settings):
    """Dead letters keep the whole tracking event (username, IP, user agent) until replayed or evicted."""
    settings.ASPECTS_SINK_XAPI_MAX_ATTEMPTS = 1
    other = create_user(f"keep{uuid.uuid4().hex[:8]}", f"keep{uuid.uuid4().hex[:6]}@example.com")
    broken = [activity.Event(activity.PROBLEM_CHECK, {"attempts": 1}, "/problem")]  # ERB's transformer fails
    for user in (learner, other):
        activity.emit(user, course, broken)
    report = drain(devstack_clickhouse)
    assert report.parked == 2 and waiting_events_of(learner) and waiting_events_of(other)

    retirement.record([learner.id])

    assert waiting_events_of(learner) == []
    assert len(waiting_events_of(other)) == 1  # another learner's dead letter stays for the operator


def test_a_retired_learners_waiting_events_are_never_parked(devstack_clickhouse, course, learner, settings):
    """Events recorded before the retirement and failing after it are dropped, not parked with their personal data."""
    settings.ASPECTS_SINK_XAPI_MAX_ATTEMPTS = 1
    activity.emit(learner, course, [activity.Event(activity.PROBLEM_CHECK, {"attempts": 1}, "/problem")])
    activity.emit(learner, course, activity.round_of_events(learner, course))
    retirement.record([learner.id])

    report = drain(devstack_clickhouse)

    assert report.parked == 0 and waiting_events_of(learner) == []
