"""
The statement queue in one LMS process: events are recorded in the emitting transaction, made into ERB's own
statements by the drain and inserted one INSERT per batch; events ERB cannot make a statement of, and
statements ClickHouse rejects, are parked in a bounded, listed, replayable dead-letter store.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import logging
import uuid

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.management import call_command
from django.db import connection, transaction
from django_redis import get_redis_connection
from event_routing_backends.backends.async_events_router import AsyncEventsRouter
from event_routing_backends.processors.xapi import XAPI_EVENT_LOGGING_ENABLED
from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from xmodule.modulestore.course_builder import create_course

from aspects_sink import delivery
from aspects_sink.models import SinkHealth, XapiStatement
from aspects_sink.sinks.xapi_statements import XapiStatementSink, raw_table
from tests.support.services import require_service
from tests.support.xapi import raw_rows

SINK_NAME = XapiStatementSink.name


@pytest.fixture
def course(db):
    return activity.CourseBlocks.of(create_course("StoreX", "Statements", "2026", "Statement store", blocks=60))


@pytest.fixture
def learners(db):
    return [create_user(f"store{i}", f"store{i}@example.com", name=f"Store {i}") for i in range(3)]


def do_a_round(course, learners) -> int:
    return sum(activity.emit(learner, course, activity.round_of_events(learner, course)) for learner in learners)


def drain(transport) -> delivery.DrainReport:
    XapiStatement.objects.update(available_at=XapiStatement.objects.earliest("created").created)  # retries are due
    return delivery.drain(SINK_NAME, transport, time_budget=float("inf"))


def test_a_statement_is_recorded_with_the_request_that_emitted_it(course, learners):
    with pytest.raises(RuntimeError), transaction.atomic():
        activity.emit(learners[0], course, activity.round_of_events(learners[0], course))
        raise RuntimeError("the request fails")
    assert not XapiStatement.objects.exists()  # rolled back with it

    do_a_round(course, learners[:1])
    assert XapiStatement.objects.count() == 5


def test_the_request_records_the_event_and_the_drain_makes_erbs_own_statements_of_it(
    devstack_clickhouse, course, learners
):
    with activity.recording() as events:
        do_a_round(course, learners)
    recorded = list(XapiStatement.objects.order_by("id"))
    assert [entry.event_name for entry in recorded] == [event["name"] for event in events]
    assert not any(entry.event_id for entry in recorded)  # no statement made in the request
    erbs = {statement["id"]: statement for statement in XApiProcessor()(copy.deepcopy(events))}

    assert drain(devstack_clickhouse).delivered == 15

    rows = devstack_clickhouse.rows(f"SELECT toString(event_id), event FROM {raw_table().insert_target}")
    assert {event_id: json.loads(text) for event_id, text in rows} == erbs  # ERB's statements, ids and all
    assert not XapiStatement.objects.exists()


def test_an_event_erb_cannot_make_a_statement_of_is_a_dead_letter_naming_it(
    devstack_clickhouse, course, learners, settings, caplog
):
    """
    An event ERB's transformer fails on is retried and parked, named; one it makes no statement of (no object id)
    is left out as ERB's own route and the history import leave it, with a WARNING: retrying it could only give
    the same answer, and parking it would fill the bounded dead-letter store with what ERB drops on purpose.
    """
    settings.ASPECTS_SINK_XAPI_MAX_ATTEMPTS = 1
    broken = [
        activity.Event(activity.PROBLEM_CHECK, {"attempts": 1}, "/problem"),  # ERB's transformer fails
        activity.Event(activity.NEXT_SEQUENCE_TAB, {"current_tab": 1}, "/page", from_browser=True),  # no object id
    ]
    activity.emit(learners[0], course, broken)
    do_a_round(course, learners)

    with caplog.at_level(logging.WARNING, logger="aspects_sink"):
        report = drain(devstack_clickhouse)

    assert (report.delivered, report.parked) == (16, 1)  # the others went through
    assert raw_rows(devstack_clickhouse) == 15
    dead = {entry.event_name: entry.last_error for entry in XapiStatement.objects.filter(state=XapiStatement.DEAD)}
    assert set(dead) == {activity.PROBLEM_CHECK}
    assert "problem_check event of" in dead[activity.PROBLEM_CHECK]
    assert "Could not get value for data.module_id" in dead[activity.PROBLEM_CHECK]
    assert any(
        "made no statement of 1 events" in record.getMessage() and activity.NEXT_SEQUENCE_TAB in record.getMessage()
        for record in caplog.records
    )

    output = io.StringIO()
    call_command("aspects_sink_dead_letters", "--sink", SINK_NAME, stdout=output)
    assert "1 dead letters." in output.getvalue() and "problem_check event of" in output.getvalue()


def test_an_event_tried_often_before_does_not_shrink_the_drain(devstack_clickhouse, course, learners, settings):
    """
    A batch holding an entry tried k times before is cut to ``limit / 2^k`` (a batch that kills its worker is split
    until its culprit is alone); the drain then goes on with the rest of the backlog instead of ending, so one event
    ERB keeps failing on at the head of the queue does not bring the drain down to a handful of events per run.
    """
    settings.ASPECTS_SINK_XAPI_BATCH_SIZE = 64
    activity.emit(learners[0], course, [activity.Event(activity.PROBLEM_CHECK, {"attempts": 1}, "/problem")])
    XapiStatement.objects.update(attempts=5)  # ERB failed on it five times: due first, the batch cut to 2
    for _ in range(4):
        do_a_round(course, learners)  # 60 good events

    report = drain(devstack_clickhouse)

    assert report.delivered == 60
    assert raw_rows(devstack_clickhouse) == 60


def test_events_left_in_erbs_batch_queue_at_the_switch_reach_clickhouse(
    devstack_clickhouse, course, learners, settings
):
    """
    With ERB's batching on (as Tutor runs Aspects), ERB's route keeps events in a Redis list until a batch is full.
    Events it held when the site switched to aspects-sink (or that pods still on ERB's route queued during a rolling
    deploy) would wait there for ever: the sweep takes them over, and the drain sends them with ERB's batching ids.
    """
    require_service("Redis", "127.0.0.1", 6379)
    settings.EVENT_ROUTING_BACKEND_BATCHING_ENABLED = True
    settings.EVENT_ROUTING_BACKEND_BATCH_SIZE = 100
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:6379/14"}}
    with activity.recording() as events:
        do_a_round(course, learners)
    XapiStatement.objects.all().delete()  # emitted before the switch: ERB's route queued them instead
    erbs_route = AsyncEventsRouter(processors=[], backend_name="xapi")
    redis = get_redis_connection()
    unreadable = f"aspects_sink:unreadable:{erbs_route.queue_name}"
    redis.delete(erbs_route.queue_name, unreadable)
    redis.set(erbs_route.last_sent_key, datetime.datetime.now().isoformat())  # ERB waits for a full batch
    try:
        for event in events:
            assert erbs_route.queue_event(redis, copy.deepcopy(event)) is None  # held
        queued = [json.loads(text) for text in redis.lrange(erbs_route.queue_name, 0, -1)]
        redis.lpush(erbs_route.queue_name, b"{not an event")  # what nothing can read is kept aside, named

        call_command("aspects_sink_sweep", "--drain", stdout=io.StringIO())

        assert not redis.exists(erbs_route.queue_name, f"aspects_sink:taken:{erbs_route.queue_name}")
        assert redis.lrange(unreadable, 0, -1) == [b"{not an event"]
    finally:
        redis.delete(erbs_route.queue_name, erbs_route.last_sent_key, unreadable)
    erbs_ids = {statement["id"] for event in queued for statement in XApiProcessor()([event])}
    rows = devstack_clickhouse.rows(f"SELECT toString(event_id) FROM {raw_table().insert_target}")
    assert {event_id for (event_id,) in rows} == erbs_ids and len(erbs_ids) == 15


def test_statements_are_not_logged_for_vector_to_insert_a_second_time(devstack_clickhouse, course, learners, caplog):
    """
    ERB logs each statement it makes to ``xapi_tracking`` (``XAPI_EVENT_LOGGING_ENABLED``, on by default): on
    Tutor's Vector path those lines are how statements reach ClickHouse, so with aspects-sink inserting them too
    each would be inserted twice, and again for every retry of a batch. While aspects-sink routes statements, none
    is logged there.
    """
    settings_on = XAPI_EVENT_LOGGING_ENABLED.is_enabled()
    with caplog.at_level(logging.INFO, logger="xapi_tracking"):
        do_a_round(course, learners)
        assert drain(devstack_clickhouse).delivered == 15
    assert settings_on and not [record for record in caplog.records if record.name == "xapi_tracking"]


def test_a_failed_recording_leaves_the_request_transaction_intact(transactional_db, course, learners, caplog):
    """Renaming a table commits on MariaDB: the test's data is flushed afterwards instead of rolled back."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE aspects_sink_xapistatement RENAME TO aspects_sink_xapistatement_away")
    try:
        # caplog's handler takes the ERROR lines as they are: changing a logger's level here clears logging's
        # caches over every logger while other threads of the process may be making new ones.
        with transaction.atomic():
            activity.emit(learners[0], course, activity.round_of_events(learners[0], course))  # INSERTs fail
            learners[0].first_name = "Saved"
            learners[0].save()  # the request goes on
            # the sink's health is counted after commit: no lock on its row while this request goes on
            assert not SinkHealth.objects.filter(sink=SINK_NAME, failed_outbox_writes__gt=0).exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE aspects_sink_xapistatement_away RENAME TO aspects_sink_xapistatement")
    learners[0].refresh_from_db()
    assert learners[0].first_name == "Saved"
    failed = [record.getMessage() for record in caplog.records if "could not record" in record.getMessage()]
    assert len(failed) == 5 and activity.PLAY_VIDEO in " ".join(failed)
    assert SinkHealth.objects.get(sink=SINK_NAME).failed_outbox_writes == 5


def test_statements_go_to_clickhouse_in_one_insert_per_batch(devstack_clickhouse, course, learners, settings):
    settings.ASPECTS_SINK_XAPI_BATCH_SIZE = 10
    do_a_round(course, learners)

    report = drain(devstack_clickhouse)

    assert (report.delivered, report.inserts) == (15, 2)
    assert raw_rows(devstack_clickhouse) == 15
    assert not XapiStatement.objects.exists()  # forgotten once ClickHouse acknowledged them
    engine, partition_key, sorting_key = devstack_clickhouse.rows(
        "SELECT engine, partition_key, sorting_key FROM system.tables WHERE database = 'xapi' AND name = {t:String}",
        {"t": raw_table().name},
    )[0]
    assert (engine, partition_key, sorting_key) == (
        "ReplacingMergeTree",
        "toYYYYMM(emission_time)",
        "emission_time, event_id",
    )


def test_only_the_events_asked_for_are_stored(course, learners, settings):
    settings.ASPECTS_SINK_XAPI_EVENTS = [activity.PLAY_VIDEO, activity.PROBLEM_CHECK]
    do_a_round(course, learners)
    assert XapiStatement.objects.count() == 6


def test_erbs_circuit_breaker_stops_statements(course, learners, settings):
    settings.XAPI_EVENTS_ENABLED = False
    do_a_round(course, learners)
    assert not XapiStatement.objects.exists()


def test_statements_owed_after_the_route_was_switched_off_are_isolated_as_before(
    devstack_clickhouse, course, learners, settings
):
    """``ASPECTS_SINK_XAPI_ENABLED`` off: statements recorded before are still sent, a rejected one parked alone."""
    settings.ASPECTS_SINK_XAPI_MAX_ATTEMPTS = 1
    table = raw_table().insert_target
    devstack_clickhouse.command(f"ALTER TABLE {table} ADD CONSTRAINT no_video CHECK position(event, 'video/verbs') = 0")
    do_a_round(course, learners)  # three video statements among fifteen
    settings.ASPECTS_SINK_XAPI_ENABLED = False

    report = drain(devstack_clickhouse)

    assert (report.delivered, report.parked) == (12, 3)


def test_rejected_statements_are_parked_within_the_bound_listed_and_replayable(
    devstack_clickhouse, course, learners, settings, caplog
):
    settings.ASPECTS_SINK_XAPI_MAX_ATTEMPTS = 1
    settings.ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS = 2
    table = raw_table().insert_target
    devstack_clickhouse.command(f"ALTER TABLE {table} ADD CONSTRAINT no_video CHECK position(event, 'video/verbs') = 0")
    do_a_round(course, learners)  # three video statements among fifteen

    with caplog.at_level(logging.ERROR, logger="aspects_sink"):
        report = drain(devstack_clickhouse)

    assert (report.delivered, report.parked) == (12, 3)
    assert raw_rows(devstack_clickhouse) == 12  # the others went through
    dead = XapiStatement.objects.filter(state=XapiStatement.DEAD)
    assert dead.count() == 2  # the bound: the oldest was evicted...
    evicted = [record.getMessage() for record in caplog.records if "evicted the oldest" in record.getMessage()]
    assert len(evicted) == 1 and "video/verbs" not in evicted[0]  # ...and logged by id, never with its statement
    assert "object_id" not in evicted[0] and "error " in evicted[0]  # its id and the error's class
    assert all("no_video" in entry.last_error for entry in dead)

    output = io.StringIO()
    call_command("aspects_sink_dead_letters", "--sink", SINK_NAME, stdout=output)
    listing = output.getvalue()
    assert "2 dead letters." in listing and "no_video" in listing

    devstack_clickhouse.command(f"ALTER TABLE {table} DROP CONSTRAINT no_video")
    call_command("aspects_sink_dead_letters", "--replay", "--sink", SINK_NAME, stdout=io.StringIO())
    assert drain(devstack_clickhouse).delivered == 2
    assert raw_rows(devstack_clickhouse) == 14


def test_a_statement_with_a_lone_surrogate_is_queued_and_reaches_clickhouse_as_emitted(
    devstack, devstack_clickhouse, course, learners
):
    """
    A browser may send ``"\\ud800"`` in an event's JSON, which Python reads as a lone surrogate; no database takes
    that as UTF-8 text. The statement must still be queued (never dropped at the request) and arrive unchanged.
    """
    import json

    events = activity.round_of_events(learners[0], course)
    problem = next(event for event in events if event.name == activity.PROBLEM_CHECK)
    (submission,) = problem.data["submission"].values()
    submission["answer"] = "lone \ud800 surrogate"
    activity.emit(learners[0], course, events)
    assert XapiStatement.objects.count() == 5

    drain(devstack_clickhouse)
    table = raw_table().insert_target
    answers = [
        json.loads(event)["result"]["response"]
        for (event,) in devstack.clickhouse_client().query(f"SELECT event FROM {table}").result_rows
        if "result" in json.loads(event) and "response" in json.loads(event)["result"]
    ]
    assert answers == ["lone \ud800 surrogate"]


def test_the_lms_database_failing_while_erb_looks_a_learner_up_is_no_fault_of_the_events(devstack_clickhouse, course):
    learner = create_user(f"lookup-{uuid.uuid4().hex[:8]}", "lookup@example.com")  # in no lookup's memo yet
    activity.emit(learner, course, activity.round_of_events(learner, course))
    table = ExternalId._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")  # ERB's anonymous-id lookup fails
    try:
        report = drain(devstack_clickhouse)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")

    assert (report.delivered, report.parked) == (0, 0)
    assert {(entry.state, entry.attempts) for entry in XapiStatement.objects.all()} == {(XapiStatement.PENDING, 0)}

    assert drain(devstack_clickhouse).delivered == 5  # the database back: every statement goes in


def test_events_queued_before_erbs_circuit_breaker_went_off_wait_for_it(
    devstack_clickhouse, course, learners, settings
):
    do_a_round(course, learners[:1])
    settings.XAPI_EVENTS_ENABLED = False  # an operator stops xAPI while five events wait

    report = drain(devstack_clickhouse)

    assert (report.delivered, report.parked) == (0, 0)
    assert {(entry.state, entry.attempts) for entry in XapiStatement.objects.all()} == {(XapiStatement.PENDING, 0)}
    paused = SinkHealth.objects.get(sink=SINK_NAME)
    assert paused.paused_since and "XAPI_EVENTS_ENABLED is off" in paused.last_error

    settings.XAPI_EVENTS_ENABLED = True
    SinkHealth.objects.filter(sink=SINK_NAME).update(last_error_at=paused.paused_since - datetime.timedelta(days=1))
    assert drain(devstack_clickhouse).delivered == 5  # the next probe: every statement goes in
