"""
The history import's faster transformation (``aspects_sink.erb.transformation.sped_up``) gives
event-routing-backends' statements to the byte: the same ids and the same JSON as ERB's transformers running as
they are, with or without an openedx-filters pipeline on the parts it runs once; and a history's statements in
ClickHouse are the live route's, text included, not only their ids.
"""

from __future__ import annotations

import datetime
import gc
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.management import call_command
from event_routing_backends.management.commands.helpers.event_log_parser import parse_json_event
from event_routing_backends.processors.openedx_filters.filters import ProcessorBaseFilter
from event_routing_backends.processors.xapi import transformer as xapi_transformer
from event_routing_backends.processors.xapi.transformer import XApiTransformer
from openedx_filters.filters import PipelineStep
from tincan import (
    Activity,
    ActivityDefinition,
    Agent,
    AgentAccount,
    Attachment,
    Context,
    ContextActivities,
    Group,
    InteractionComponent,
    Result,
    Score,
    Statement,
    StatementRef,
    SubStatement,
    Verb,
)
from tincan.base import Base as TincanBase
from tincan.serializable_base import SerializableBase
from xmodule.modulestore.course_builder import create_course

from aspects_sink import erb
from aspects_sink.erb import as_emitted, transformation
from aspects_sink.models import XapiStatement
from aspects_sink.sinks.base import Stamp
from aspects_sink.sinks.registry import get_sink
from aspects_sink.sinks.xapi_statements import raw_table
from aspects_sink.xapi.history import xapi_router
from tests.support.services import require_service

LEARNERS = 5
ACTOR_FILTER = "event_routing_backends.processors.xapi.transformer.xapi_transformer.get_actor"


class RenamedActor(PipelineStep):
    """An operator's pipeline step on ERB's ``get_actor``: the statement's actor as the step makes it."""

    def run_filter(self, transformer, result):
        result.account.name = f"renamed-{result.account.name}"
        return {"result": result}


@pytest.fixture
def tracking_lines(db) -> list[str]:
    """Learners' two rounds of activity in a course, sent live (queued statements) and as tracking-log lines."""
    course = activity.CourseBlocks.of(create_course("SameX", uuid.uuid4().hex[:8], "2026", "Same", blocks=60))
    learners = [create_user(f"same{i}-{uuid.uuid4().hex[:6]}", f"same{i}@example.com") for i in range(LEARNERS)]
    with activity.recording() as events:
        for step in range(2):
            for learner in learners:
                activity.emit(learner, course, activity.round_of_events(learner, course, step))
    return [activity.tracking_log_line(event) for event in events]


def statement_rows(lines: list[str]) -> list[erb.StatementRow]:
    """Each line through ERB's xapi processors, as the history reads and hands it to them."""
    router = xapi_router()
    rows = []
    for line in lines:
        event = parse_json_event(line)
        event["timestamp"] = as_emitted(event["timestamp"])
        rows += [erb.statement_row(statement) for statement in router.process_event(event)]
    return rows


def erbs_attributes() -> tuple:
    return (
        ProcessorBaseFilter.__dict__["generate_dynamic_filter"],
        XApiTransformer.__dict__["get_actor"],
        XApiTransformer.__dict__["get_verb"],
        xapi_transformer.get_anonymous_user_id,
        xapi_transformer.get_course_from_id,
        TincanBase.__dict__["__setattr__"],
        SerializableBase.__dict__["as_version"],
    )


@pytest.mark.parametrize("batching", [False, True], ids=["erb-sends-each-event", "erb-batches-as-tutor-runs-it"])
def test_the_live_drain_and_a_history_give_the_ids_erbs_own_route_gives_on_the_site(tracking_lines, settings, batching):
    """
    ERB makes a statement's id of the text of the event's time. Sending each event, it is handed the tracker's
    datetime; batching (``EVENT_ROUTING_BACKEND_BATCHING_ENABLED``, on as Tutor runs Aspects) its Redis queue
    carries events as JSON, so it is handed ISO text, and the same event gets another id. Statements a site's ERB
    route wrote before the site switched are the ones a history overlapping them must collapse into: the drain and
    the history give the ids ERB's route gives on that site, whichever way it is configured.
    """
    require_service("Redis", "127.0.0.1", 6379)
    settings.EVENT_ROUTING_BACKEND_BATCHING_ENABLED = batching
    settings.EVENT_ROUTING_BACKEND_BATCH_SIZE = len(tracking_lines)
    router = xapi_router()
    steps = erb.XapiSteps.of(router)
    emitted = []
    for line in tracking_lines:
        event = parse_json_event(line)
        event["timestamp"] = as_emitted(event["timestamp"])  # the tracker's datetime, as the event was emitted
        emitted.append(event)

    if batching:  # ERB's own queue, on a real Redis: what its transformers were handed
        connection = redis.Redis(host="127.0.0.1", port=6379)
        connection.delete(router.queue_name, router.last_sent_key)
        connection.set(router.last_sent_key, datetime.datetime.now().isoformat())  # a batch goes when it is full
        try:
            batch = [router.queue_event(connection, dict(event)) for event in emitted][-1]
        finally:
            connection.delete(router.queue_name, router.last_sent_key)
        handed = [json.loads(queued) for queued in batch]
    else:
        handed = [dict(event) for event in emitted]
    erbs = {statement["id"] for event in handed for statement in router.process_event(event)}

    drained = {
        event_id
        for event in emitted
        for event_id, _, _ in erb.transform(steps, erb.event_from_text(erb.event_text(event)))
    }
    imported = {event_id for line in tracking_lines for event_id, _, _ in erb.transform(steps, parse_json_event(line))}
    assert len(erbs) == 10 * LEARNERS
    assert drained == erbs and imported == erbs


def test_the_faster_transformation_gives_erbs_statements_to_the_byte_and_leaves_erb_as_it_was(tracking_lines):
    erbs = statement_rows(tracking_lines)
    assert len(erbs) == 10 * LEARNERS and len({event_id for event_id, _, _ in erbs}) == len(erbs)
    originals = erbs_attributes()
    thresholds = gc.get_threshold()

    with transformation.sped_up():
        assert XApiTransformer.__dict__["get_actor"] is not originals[1]  # no pipeline: run once per statement
        faster = statement_rows(tracking_lines)
        again = statement_rows(tracking_lines)  # what the memos kept from the first pass

    assert faster == erbs and again == erbs
    assert erbs_attributes() == originals
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def every_kind_of_tincan_statement() -> list[Statement]:
    """Statements with each of tincan's objects, lists, ids, times, durations, maps and values left out."""
    learner = Agent(account=AgentAccount(home_page="http://lms.example.com", name="a1b2"), name="Ada")
    team = Group(member=[learner, Agent(mbox="mailto:bo@example.com")], name="Team")
    definition = ActivityDefinition(
        name={"en-US": "Problem", "fr": "Problème"},
        description={"en-US": "A problem"},
        type="http://adlnet.gov/expapi/activities/cmi.interaction",
        interaction_type="choice",
        correct_responses_pattern=["a[,]b"],
        choices=[InteractionComponent(id="a", description={"en-US": "A"}), InteractionComponent(id="b")],
        more_info="http://lms.example.com/more",
        extensions={"http://example.com/x": {"nested": [1, 2, None]}, "http://example.com/y": None},
    )
    problem = Activity(id="http://lms.example.com/xblock/block-v1:X+Y+Z+type@problem+block@p", definition=definition)
    verb = Verb(id="http://adlnet.gov/expapi/verbs/answered", display={"en": "answered"})
    result = Result(
        score=Score(scaled=0.5, raw=1, min=0, max=2),
        success=False,
        completion=True,
        response="a[,]b",
        duration=datetime.timedelta(minutes=1, seconds=2.5),
        extensions={"http://example.com/attempts": 3},
    )
    context = Context(
        registration=uuid.UUID("01234567-89ab-4cde-8f01-23456789abcd"),
        instructor=learner,
        team=team,
        context_activities=ContextActivities(
            parent=[Activity(id="http://lms.example.com/course/c", object_type="Activity")],
            grouping=Activity(id="http://lms.example.com/course/g"),
        ),
        revision="r1",
        platform="Open edX",
        language="en-US",
        statement=StatementRef(id=uuid.UUID("11111111-2222-4333-8444-555555555555")),
        extensions={"https://w3id.org/xapi/openedx/extension/transformer-version": "event-routing-backends@9"},
    )
    return [
        Statement(
            id=uuid.UUID("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"),
            actor=learner,
            verb=verb,
            object=problem,
            result=result,
            context=context,
            timestamp=datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC),
            stored=datetime.datetime(2025, 1, 2, 3, 4, 6),
            authority=Agent(mbox="mailto:lrs@example.com"),
            version="1.0.3",
            attachments=[
                Attachment(
                    usage_type="http://example.com/usage",
                    display={"en-US": "file"},
                    content_type="text/plain",
                    length=4,
                    sha2="abcd",
                    fileurl="http://example.com/file",
                )
            ],
        ),
        Statement(actor=team, verb=verb, object=SubStatement(actor=learner, verb=verb, object=problem)),
        Statement(
            actor=learner,
            verb=Verb(id="http://adlnet.gov/expapi/verbs/voided"),
            object=StatementRef(id="9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"),
        ),
    ]


def test_tincan_serialises_every_kind_of_statement_as_it_does_on_its_own():
    tincans = [statement.to_json() for statement in every_kind_of_tincan_statement()]
    originals = erbs_attributes()

    with transformation.sped_up():
        faster = [statement.to_json() for statement in every_kind_of_tincan_statement()]
        with pytest.raises(AttributeError, match=r"Property 'colour' cannot be set on a 'tincan\.Verb' object"):
            Verb(id="http://example.com/verb", colour="blue")

    assert faster == tincans
    assert erbs_attributes() == originals


def test_a_drain_batch_makes_erbs_statements_to_the_byte_and_leaves_erb_as_it_was(tracking_lines):
    erbs = {str(event_id): text for event_id, _, text in statement_rows(tracking_lines)}
    originals, thresholds = erbs_attributes(), gc.get_threshold()
    recorded = [str(pk) for pk in XapiStatement.objects.values_list("pk", flat=True)]

    (batch,) = get_sink("xapi_statements").writes_for(recorded, Stamp(1))

    columns = dict(zip(batch.column_names, batch.columns))
    assert {str(event_id): text for event_id, text in zip(columns["event_id"], columns["event"])} == erbs
    assert erbs_attributes() == originals
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_threads_of_one_worker_speeding_erb_up_at_once_leave_it_as_it_was():
    originals = erbs_attributes()
    start = threading.Barrier(4)

    def batches():
        start.wait()
        for _ in range(25):
            with transformation.sped_up():
                assert XApiTransformer.__dict__["get_actor"] is not originals[1]
                time.sleep(0.001)  # a batch's work: the other threads run meanwhile

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(batches) for _ in range(4)]:
            done.result()
    assert erbs_attributes() == originals


def test_a_thread_speeding_erb_up_inside_its_own_speed_up_goes_on_and_leaves_erb_as_it_was():
    originals, thresholds = erbs_attributes(), gc.get_threshold()
    statements = []

    def nested():
        with transformation.sped_up():
            with transformation.sped_up():
                statements.extend(statement.to_json() for statement in every_kind_of_tincan_statement())
            statements.extend(statement.to_json() for statement in every_kind_of_tincan_statement())

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=60)  # a thread waiting on its own lock never gets here by itself

    assert not thread.is_alive()
    assert statements == [statement.to_json() for statement in every_kind_of_tincan_statement()] * 2
    assert erbs_attributes() == originals
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_objects_the_host_process_froze_stay_frozen():
    """
    An unfreeze would take every frozen object back: the count would fall to nothing. (It may fall by a few
    meanwhile: a frozen object whose last reference goes is freed all the same.)
    """
    gc.freeze()  # as a server may before it forks its workers, to keep their pages shared
    frozen = gc.get_freeze_count()
    try:
        with transformation.sped_up():
            assert gc.get_freeze_count() >= frozen - 1000
        assert frozen - 1000 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_a_filter_pipeline_on_the_actor_runs_on_every_call_as_in_erb(tracking_lines, settings):
    settings.OPEN_EDX_FILTERS_CONFIG = {
        ACTOR_FILTER: {"pipeline": [f"{__name__}.RenamedActor"], "fail_silently": False}
    }
    erbs = statement_rows(tracking_lines)
    assert all('"name":"renamed-' in text for _, _, text in erbs)
    get_actor = XApiTransformer.__dict__["get_actor"]

    with transformation.sped_up():
        assert XApiTransformer.__dict__["get_actor"] is get_actor  # a pipeline step could answer otherwise twice
        assert statement_rows(tracking_lines) == erbs


def test_a_historys_statements_are_the_live_routes_text_included(devstack_clickhouse, tracking_lines, tmp_path):
    # The live route's statements: those its drain makes of the events the requests recorded.
    recorded = [str(pk) for pk in XapiStatement.objects.values_list("pk", flat=True)]
    (batch,) = get_sink("xapi_statements").writes_for(recorded, Stamp(1))
    columns = dict(zip(batch.column_names, batch.columns))
    live = {str(event_id): text for event_id, text in zip(columns["event_id"], columns["event"])}
    assert len(live) == 10 * LEARNERS
    path = tmp_path / "tracking.log"
    path.write_text("".join(line + "\n" for line in tracking_lines))

    call_command("aspects_sink_xapi_history", str(path), "--no-progress")

    query = f"SELECT toString(event_id), event FROM {raw_table().insert_target}"
    assert dict(devstack_clickhouse.rows(query)) == live
