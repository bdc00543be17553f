"""
Statements assembled from ERB's parts (``aspects_sink.erb.assembly``, a history's fast path) are ERB's own to the
byte, text and id, for every event a recipe covers, in the shapes the LMS and the mobile apps send them; events no
recipe covers, and events a part's method refuses, take ERB's path; a recipe that missed a value ERB reads is
caught by the check and its transformer handed back to ERB; an openedx-filters pipeline on ERB's hooks turns the
assembly off.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from devstack_tools.learner_activity import Event
from event_routing_backends.management.commands.helpers.event_log_parser import parse_json_event
from event_routing_backends.processors.xapi.event_transformers import video_events
from tincan.conversions.iso8601 import make_datetime
from xmodule.modulestore.course_builder import create_course

from aspects_sink import erb
from aspects_sink.erb import assembly, transformation
from aspects_sink.erb.assembly import Assembly, Recipe
from aspects_sink.xapi.history import xapi_router

ACTOR_FILTER = "event_routing_backends.processors.xapi.transformer.xapi_transformer.get_actor"


def events_of_every_recipe(blocks: activity.CourseBlocks, user, step: int) -> list[Event]:
    """Each event name a recipe covers, as the LMS or a mobile app sends it, its values varied by ``step``."""
    course_id, video, problem, sequential = str(blocks.course_key), blocks.video, blocks.problem, blocks.sequential
    video_page, problem_path = blocks.courseware_url(video), f"/courses/{course_id}/xblock/{problem.location}/handler"
    position = float(step * 7 % 180)
    enrollment = {"user_id": user.id, "course_id": course_id, "mode": ("audit", "verified")[step % 2]}
    question = f"{problem.location.block_id}_2_1"
    submission = {
        "question": "Which number is even?",
        "answer": ("Two", "Three")[step % 2],
        "response_type": "multiplechoiceresponse",
        "input_type": "choicegroup",
        "correct": step % 2 == 0,
        "variant": "",
        "group_label": "",
    }

    def tab(name: str, current: int, target: int, placement: str) -> Event:
        """A move between a subsection's units, from the browser."""
        data = {"current_tab": current, "target_tab": target, "tab_count": 4, "id": str(sequential.location)}
        return Event(name, {**data, "widget_placement": placement}, video_page, True)

    return [
        Event("load_video", {"id": video.block_id, "code": "html5", "duration": 180}, video_page, True),
        Event("play_video", {"id": video.block_id, "currentTime": position, "duration": 180.0}, video_page, True),
        Event("pause_video", {"id": video.block_id, "currentTime": 0, "duration": 180.0}, video_page, True),
        Event("stop_video", {"id": video.block_id, "currentTime": position}, video_page, True),
        Event(
            "seek_video",
            {"id": video.block_id, "old_time": position, "new_time": 12.5, "type": "onSlideSeek"},
            video_page,
            True,
        ),
        Event(
            "speed_change_video",
            {
                "id": video.block_id,
                "current_time": position,
                "old_speed": "1.0",
                "new_speed": ("1.50", "2.0")[step % 2],
            },
            video_page,
            True,
        ),
        Event("show_transcript", {"id": video.block_id, "current_time": position}, video_page, True),
        Event("hide_transcript", {"id": video.block_id, "current_time": position}, video_page, True),
        Event("video_show_cc_menu", {"id": video.block_id}, video_page, True),
        Event("video_hide_cc_menu", {"id": video.block_id, "current_time": 3}, video_page, True),
        Event("complete_video", {"id": video.block_id, "duration": 180.0}, video_page, True),
        Event("edx.video.played", {"id": video.block_id, "current_time": position, "duration": 180}, video_page),
        Event("edx.video.position.changed", {"id": video.block_id, "old_time": 1, "new_time": 2}, video_page),
        Event("edx.video.closed_captions.shown", {"id": video.block_id, "current_time": 4.25}, video_page),
        Event("edx.video.closed_captions.hidden", {"id": video.block_id, "current_time": 5}, video_page),
        Event("edx.video.transcript.shown", {"id": video.block_id, "current_time": position}, video_page),
        Event("edx.video.transcript.hidden", {"id": video.block_id, "current_time": 0.0}, video_page),
        Event("edx.video.loaded", {"id": video.block_id, "duration": 180.0}, video_page),
        Event("edx.video.paused", {"id": video.block_id, "current_time": position, "duration": 180}, video_page),
        Event("edx.video.stopped", {"id": video.block_id, "current_time": 180.0}, video_page),
        Event("edx.video.completed", {"id": video.block_id, "duration": 180.0}, video_page),
        tab("edx.ui.lms.sequence.next_selected", 1 + step % 3, 2, "top"),
        tab("edx.ui.lms.sequence.previous_selected", 3, 2, "bottom"),
        tab("edx.ui.lms.sequence.tab_selected", 1, 3 + step % 2, "top"),
        Event(
            "edx.ui.lms.link_clicked",
            {"current_url": f"{activity.LMS}{video_page}", "target_url": f"https://example.com/reading/{step % 2}"},
            video_page,
            True,
        ),
        Event(
            "edx.ui.lms.sequence.outline.selected",
            {"target_url": f"{activity.LMS}{blocks.courseware_url(sequential)}", "target_name": "Unit 2"},
            video_page,
            True,
        ),
        Event(
            "edx.ui.lms.outline.selected",
            {
                "current_url": f"{activity.LMS}/courses/{course_id}/course/",
                "target_url": f"{activity.LMS}{blocks.courseware_url(sequential)}",
                "target_name": "Week 1",
                "widget_placement": "accordion",
            },
            video_page,
            True,
        ),
        Event("edx.course.enrollment.activated", enrollment, "/api/enrollment/v1/enrollment"),
        Event("edx.course.enrollment.mode_changed", enrollment, "/api/enrollment/v1/enrollment"),
        Event("edx.course.enrollment.deactivated", enrollment, "/api/enrollment/v1/enrollment"),
        Event(
            "edx.course.grade.passed.first_time",
            {
                "user_id": user.id,
                "course_id": course_id,
                "event_transaction_id": str(uuid.uuid4()),
                "event_transaction_type": "edx.grades.problem.submitted",
            },
            problem_path,
        ),
        Event("edx.course.grade.now_failed", {"user_id": user.id, "course_id": course_id}, problem_path),
        Event("edx.course.grade.now_passed", {"user_id": user.id, "course_id": course_id}, problem_path),
        Event(
            "edx.grades.subsection.grade_calculated",
            {
                "user_id": user.id,
                "course_id": course_id,
                "block_id": str(sequential.location),
                "weighted_total_earned": float(step % 2),
                "weighted_total_possible": 1.0,
                "weighted_graded_earned": 0.0,
                "weighted_graded_possible": 0.0,
                "first_attempted": "2026-01-01T00:00:00+00:00",
                "visible_blocks_hash": str(uuid.uuid4()),
                "event_transaction_id": str(uuid.uuid4()),
                "event_transaction_type": "edx.grades.problem.submitted",
            },
            problem_path,
        ),
        Event(
            "edx.grades.course.grade_calculated",
            {
                "user_id": user.id,
                "course_id": course_id,
                "percent_grade": (0.82, 0.0)[step % 2],
                "letter_grade": ("Pass", "")[step % 2],
                "course_edited_timestamp": "2026-01-01T00:00:00+00:00",
                "course_version": "v1",
                "grading_policy_hash": str(uuid.uuid4()),
            },
            problem_path,
        ),
        Event(
            "edx.grades.problem.submitted",
            {
                "user_id": user.id,
                "course_id": course_id,
                "problem_id": str(problem.location),
                "weighted_earned": step % 2,
                "weighted_possible": 1,
                "event_transaction_id": str(uuid.uuid4()),
            },
            problem_path,
        ),
        Event("showanswer", {"problem_id": str(problem.location)}, problem_path),
        Event(
            "edx.problem.hint.demandhint_displayed",
            {"module_id": str(problem.location), "hint_index": step % 2, "hint_len": 2, "hint_text": "Think of two."},
            problem_path,
        ),
        Event("edx.problem.completed", {"problem_id": str(problem.location)}, problem_path),
        Event(
            "problem_check",
            {
                "problem_id": str(problem.location),
                "attempts": step + 1,
                "answers": {question: ("choice_1", "choice_2")[step % 2]},
                "grade": step % 2,
                "max_grade": 1,
                "success": ("correct", "incorrect")[step % 2],
                "submission": {question: submission},
            },
            problem_path,
        ),
        Event(
            "problem_check",
            {
                "problem_id": str(problem.location),
                "attempts": 1,
                "answers": {question: "4"},
                "grade": 0,
                "max_grade": 0,
                "success": "incorrect",
                "submission": {},
            },
            problem_path,
        ),
        Event(
            "problem_check",
            {
                "problem_id": str(problem.location),
                "attempts": 2,
                "answers": {question: ["choice_0", "choice_2"]},
                "grade": 1,
                "max_grade": 2,
                "success": "incorrect",
                "submission": {question: {**submission, "answer": ["Two", "Four"], "response_type": "choiceresponse"}},
            },
            problem_path,
        ),
        # a problem of two questions: ERB makes three statements (its path)
        Event(
            "problem_check",
            {
                "problem_id": str(problem.location),
                "attempts": 1,
                "grade": 1,
                "max_grade": 2,
                "answers": {question: "choice_1", f"{question[:-4]}_3_1": "x"},
                "success": "incorrect",
                "submission": {question: submission, f"{question[:-4]}_3_1": {**submission, "question": "Name?"}},
            },
            problem_path,
        ),
        # the browser's problem_check (its data a query string): the block id is made of the referer
        Event("problem_check", f"input_{question}=choice_1", problem_path, True),  # type: ignore[arg-type]
        # events no recipe covers: ERB's path
        Event(
            "edx.forum.thread.created",
            {
                "id": "t1",
                "title": "Hello",
                "body": "…",
                "category_id": "c1",
                "category_name": "General",
                "discussion": {"id": "d1"},
                "url": "https://example.com/t1",
            },
            "/courses/discussion",
        ),
        Event(
            "edx.completion.block_completion.changed",
            {"block_id": str(problem.location), "completion": 1.0},
            problem_path,
        ),
    ]


@pytest.fixture
def tracking_lines(db) -> list[str]:
    """Three learners send every event twice over, with values varied: tracking-log lines, as a history reads."""
    blocks = activity.CourseBlocks.of(create_course("AsmX", uuid.uuid4().hex[:8], "2026", "Assembly", blocks=60))
    learners = [create_user(f"asm{i}-{uuid.uuid4().hex[:6]}", f"asm{i}@example.com") for i in range(3)]
    with activity.recording() as events:
        for step in range(3):
            for learner in learners:
                activity.emit(learner, blocks, events_of_every_recipe(blocks, learner, step))
    return [activity.tracking_log_line(event) for event in events]


def erbs_rows(lines: list[str]) -> list[erb.StatementRow]:
    steps = erb.XapiSteps.of(xapi_router())
    return [row for line in lines for row in erb.transform(steps, parse_json_event(line))]


def assembled_rows(lines: list[str]) -> tuple[list[erb.StatementRow], Assembly]:
    with transformation.sped_up():
        made = Assembly(erb.XapiSteps.of(xapi_router()))
        return [row for line in lines for row in made.transform(parse_json_event(line))], made


@pytest.mark.parametrize("batching", [False, True], ids=["erb-sends-each-event", "erb-batches-as-tutor-runs-it"])
def test_assembled_statements_are_erbs_to_the_byte(tracking_lines, settings, batching):
    settings.EVENT_ROUTING_BACKEND_BATCHING_ENABLED = batching  # the time handed as a datetime, or as ISO text
    erbs = erbs_rows(tracking_lines)
    assembled, made = assembled_rows(tracking_lines)

    assert assembled == erbs
    assert len({event_id for event_id, _, _ in erbs}) == len(erbs) == 3 * 3 * 48
    # per round of 46 events: 43 assembled; ERB's path for the problem of two questions (3 statements) and the
    # two events no recipe covers
    checked = made.counts.checked  # the first event of each transformer, also made by ERB and compared
    assert made.counts.assembled + made.counts.by_erb == len(erbs)
    assert made.counts.assembled == 3 * 3 * 43 - checked
    with_recipes = {name for name, kind in made.registry.items() if kind in assembly.RECIPES}
    assert len(with_recipes) == 40 and with_recipes <= {json.loads(line)["name"] for line in tracking_lines}


def test_a_recipe_that_misses_a_value_erb_reads_is_caught_and_its_transformer_handed_back_to_erb(
    tracking_lines, monkeypatch, caplog
):
    """A video's object keyed without its block: the second video of the course is served the first's object."""
    lines = [line for line in tracking_lines if '"name": "play_video"' in line]
    video_block = json.loads(lines[1])["event"]["id"]
    other_video = lines[1].replace(f'"id": "{video_block}"', f'"id": "other{video_block}"')
    assert other_video != lines[1]
    lines = [lines[0], other_video, *lines[2:]]
    monkeypatch.setitem(
        assembly.RECIPES,
        video_events.VideoInteractionTransformers,
        Recipe(object=lambda t: assembly._values(t, "context.course_id"), result=lambda t: ()),
    )
    monkeypatch.setattr(assembly, "CHECK_EVERY", 1)

    assembled, made = assembled_rows(lines)

    assert assembled == erbs_rows(lines)
    warnings = [record.getMessage() for record in caplog.records if record.name == assembly.__name__]
    assert len(warnings) == 1 and "differ from ERB's own in object: VideoInteractionTransformers's" in warnings[0]
    assert made.counts.checked == 2 and made.counts.assembled == 0 and made.counts.by_erb == len(lines)


def test_an_openedx_filters_pipeline_on_erbs_hooks_leaves_every_statement_to_erb(tracking_lines, settings):
    settings.OPEN_EDX_FILTERS_CONFIG = {
        ACTOR_FILTER: {"fail_silently": False, "pipeline": ["tests.xapi.test_history_transformation.RenamedActor"]}
    }
    erbs = erbs_rows(tracking_lines)
    assembled, made = assembled_rows(tracking_lines)

    assert assembled == erbs and '"name":"renamed-' in erbs[0][2]
    assert made.counts.assembled == 0


def test_values_equal_in_python_but_not_in_json_get_parts_of_their_own(tracking_lines):
    """``0``, ``0.0``, ``-0.0`` and ``False`` are one dict key; ERB writes each as it is (or reads it as None)."""
    play = next(line for line in tracking_lines if '"name": "play_video"' in line)
    hint = next(line for line in tracking_lines if '"name": "edx.problem.hint.demandhint_displayed"' in line)
    lines = [
        re.sub(r'"(currentTime|duration)": [^,}]+', rf'"\1": {value}', play)
        for value in ("0.0", "-0.0", "0", "false", "-0.0", "NaN", "NaN")
    ] + [re.sub(r'"hint_index": [^,}]+', f'"hint_index": {value}', hint) for value in ("0", "0.0", "-0.0", "false")]

    assembled, made = assembled_rows(lines)

    assert assembled == erbs_rows(lines) and made.counts.assembled == len(lines) - 2  # the first of each checked


def test_a_part_holding_a_lone_surrogate_gives_erbs_escaped_text(tracking_lines):
    """No database stores a lone surrogate as UTF-8: ERB's path writes such a statement with JSON escapes."""
    outline = next(line for line in tracking_lines if '"name": "edx.ui.lms.outline.selected"' in line)
    lines = [outline.replace('"target_name": "Week 1"', f'"target_name": "Week {text}"') for text in ("\\ud800", "2")]
    assembled, _ = assembled_rows([*lines, *lines])
    assert assembled == erbs_rows([*lines, *lines]) and "\\ud800" in assembled[0][2]


def test_memos_that_start_again_give_the_same_statements(tracking_lines, monkeypatch):
    monkeypatch.setattr(assembly, "PARTS_KEPT", 2)
    assembled, made = assembled_rows(tracking_lines)
    assert assembled == erbs_rows(tracking_lines) and made.counts.assembled > 0


def test_an_event_a_part_refuses_takes_erbs_path_which_names_it(tracking_lines):
    line = next(line for line in tracking_lines if '"name": "edx.grades.problem.submitted"' in line)
    broken = line.replace('"weighted_possible": 1', '"weighted_possibly": 1')
    with pytest.raises(erb.TransformationError, match="KeyError: 'weighted_possible'"):
        assembled_rows([broken])


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-01-02T03:04:05.678901+00:00",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T03:04:05.678+00:00",
        "2026-01-02T03:04:05.678901Z",
        "2026-01-02T08:34:05.5+05:30",
        "2026-01-02 03:04:05.678901-04:00",
        "20260102T030405Z",
        datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC),
        datetime.datetime(2026, 1, 2, 3, 4, 5),
        "2026-01-02T03:04:05.678901",
        "2026-01-02",
        "2026-01-02T03:04:05+05:30:15",
    ],
)
def test_a_statements_time_is_tincans_text_of_it_or_refused_as_tincan_refuses_it(timestamp):
    """
    tincan keeps a datetime as it is and parses text as ISO 8601 (aniso8601) before writing it again; it refuses
    text without an offset, or with a space for its ``T`` (which Python's own parser takes).
    """
    try:
        expected = timestamp if isinstance(timestamp, datetime.datetime) else make_datetime(timestamp)
    except ValueError as refusal:
        with pytest.raises(ValueError, match=re.escape(str(refusal).splitlines()[0])):
            assembly._statement_time(timestamp)
    else:
        assert assembly._statement_time(timestamp) == expected.isoformat()
