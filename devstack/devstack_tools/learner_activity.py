"""
Learners at work in a course, as the tracking-log events edx-platform emits for it: for tests, demos and
benchmarks of the xAPI route.

Each event goes through ``eventtracking.tracker.emit`` inside the request and course contexts edx-platform
would have entered (``common.djangoapps.track.contexts``), one transaction per event as one request per
click; browser events carry ``event_source: browser`` and the page, as the ``/event`` endpoint adds them.
The data are shaped as the LMS's views, XBlocks and grading tasks send them, so event-routing-backends'
transformers see what they see in production: one xAPI statement per event.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from common.djangoapps.track import contexts
from django.contrib.auth.models import User
from django.db import transaction
from eventtracking import tracker
from eventtracking.backends.logger import DateTimeJSONEncoder
from opaque_keys.edx.keys import CourseKey
from xmodule.modulestore.django import modulestore

ENROLLED = "edx.course.enrollment.activated"
NEXT_SEQUENCE_TAB = "edx.ui.lms.sequence.next_selected"
PLAY_VIDEO = "play_video"
PROBLEM_CHECK = "problem_check"
SUBSECTION_GRADED = "edx.grades.subsection.grade_calculated"
# One round of a learner's activity: these events, in this order, one xAPI statement each.
ROUND = (ENROLLED, NEXT_SEQUENCE_TAB, PLAY_VIDEO, PROBLEM_CHECK, SUBSECTION_GRADED)
_RECORDER = "learner_activity_recorder"
LMS = "http://localhost:18000"


@dataclass(frozen=True)
class Event:
    """One tracking event: name, data, the page it happens on, and whether the browser sent it."""

    name: str
    data: dict[str, Any]
    path: str
    from_browser: bool = False


@dataclass(frozen=True)
class CourseBlocks:
    """The blocks of a course learners interact with: a subsection, a video and a problem in it."""

    course_key: CourseKey
    sequential: Any
    video: Any
    problem: Any

    @classmethod
    def of(cls, course_key: CourseKey) -> "CourseBlocks":
        first = {}
        for block in modulestore().get_items(course_key):
            first.setdefault(block.block_type, block)
        return cls(course_key, first["sequential"], first["video"], first["problem"])

    def courseware_url(self, block) -> str:
        return f"/courses/{self.course_key}/courseware/{block.location}"


def round_of_events(user: User, blocks: CourseBlocks, step: int = 0) -> list[Event]:
    """A round of activity (``ROUND``); ``step`` varies the answers and times from round to round."""
    course_id, problem, video, sequential = str(blocks.course_key), blocks.problem, blocks.video, blocks.sequential
    correct = step % 2 == 0
    return [
        Event(ENROLLED, {"user_id": user.id, "course_id": course_id, "mode": "audit"}, "/api/enrollment/v1/enrollment"),
        Event(
            NEXT_SEQUENCE_TAB,
            {
                "current_tab": 1,
                "target_tab": 2,
                "tab_count": 4,
                "id": str(sequential.location),
                "widget_placement": "top",
            },
            blocks.courseware_url(sequential),
            from_browser=True,
        ),
        Event(
            PLAY_VIDEO,
            {"id": video.block_id, "code": "html5", "currentTime": float(step % 180), "duration": 180.0},
            blocks.courseware_url(video),
            from_browser=True,
        ),
        Event(
            PROBLEM_CHECK,
            {
                "problem_id": str(problem.location),
                "attempts": step + 1,
                "answers": {f"{problem.location.block_id}_2_1": "choice_1" if correct else "choice_2"},
                "grade": int(correct),
                "max_grade": 1,
                "success": "correct" if correct else "incorrect",
                "submission": {
                    f"{problem.location.block_id}_2_1": {
                        "question": "Which number is even?",
                        "answer": "Two" if correct else "Three",
                        "response_type": "multiplechoiceresponse",
                        "input_type": "choicegroup",
                        "correct": correct,
                        "variant": "",
                        "group_label": "",
                    }
                },
            },
            f"/courses/{course_id}/xblock/{problem.location}/handler/xmodule_handler/problem_check",
        ),
        Event(
            SUBSECTION_GRADED,
            {
                "user_id": user.id,
                "course_id": course_id,
                "block_id": str(sequential.location),
                "weighted_total_earned": float(correct),
                "weighted_total_possible": 1.0,
                "weighted_graded_earned": float(correct),
                "weighted_graded_possible": 1.0,
                "first_attempted": "2026-01-01T00:00:00+00:00",
                "visible_blocks_hash": "",
                "event_transaction_id": "",
                "event_transaction_type": "edx.grades.problem.submitted",
            },
            f"/courses/{course_id}/xblock/{problem.location}/handler/xmodule_handler/problem_check",
        ),
    ]


def emit(user: User, blocks: CourseBlocks, events: list[Event]) -> int:
    """
    Emit the events as ``user`` would cause them: one request (context and transaction) per event, made
    from the subsection's page.
    """
    page = f"{LMS}{blocks.courseware_url(blocks.sequential)}"
    for event in events:
        browser = {"event_source": "browser", "page": page} if event.from_browser else {}
        with (
            transaction.atomic(),
            contexts.request(user, blocks.course_key, path=event.path, session_key=f"s{user.id}", referer=page),
            tracker.get_tracker().context("edx.course.browser", browser),
        ):
            tracker.emit(event.name, event.data)
    return len(events)


def emit_rounds(course_key: str, usernames: list[str], rounds: int = 1) -> int:
    """Every learner does ``rounds`` rounds of activity in the course; return the number of events emitted."""
    blocks = CourseBlocks.of(CourseKey.from_string(course_key))
    users = list(User.objects.filter(username__in=usernames))
    emitted = 0
    for step in range(rounds):
        for user in users:
            emitted += emit(user, blocks, round_of_events(user, blocks, step))
    return emitted


class Recorder:
    """An event-tracking backend that keeps what was emitted, so the very same events can be sent again."""

    def __init__(self):
        self.events: list[dict] = []

    def send(self, event: dict) -> None:
        self.events.append(event)


@contextmanager
def recording() -> Iterator[list[dict]]:
    """The events emitted in the block, as the tracker's backends received them (timestamps included)."""
    routing = tracker.get_tracker().routing_backend
    recorder = Recorder()
    routing.register_backend(_RECORDER, recorder)
    try:
        yield recorder.events
    finally:
        routing.backends.pop(_RECORDER)


def send_again(events: list[dict]) -> None:
    """Send recorded events through the tracker again, one transaction each, as a retried delivery would."""
    for event in events:
        with transaction.atomic():
            tracker.get_tracker().routing_backend.send(event)


def tracking_log_line(event: dict) -> str:
    """
    The line edx-platform's ``tracking_logs`` backend writes for an emitted event: legacy field names
    (``event_type``, ``time``, ``event``) and the request's fields at the top, times in UTC ISO format.
    """
    context = event["context"]
    request_fields = ("username", "session", "ip", "agent", "host", "referer", "accept_language", "page")
    return json.dumps(
        {
            "name": event["name"],
            "event_type": event["name"],
            "time": event["timestamp"],
            "event": event["data"],
            "event_source": context.get("event_source", "server"),
            "context": context,
            **{field: context.get(field, "") for field in request_fields},
        },
        cls=DateTimeJSONEncoder,
    )
