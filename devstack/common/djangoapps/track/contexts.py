"""
The tracking contexts edx-platform puts around events (``common.djangoapps.track``), which
event-routing-backends reads when it builds xAPI statements: the user (actor), the course (context
activity and object ids), the session and the page.

``TrackMiddleware`` enters the request's context for every request and views enter the course's, so an
event emitted while handling a request carries both. :func:`request` does the same for code that runs
outside a request (tests, demos, benchmarks).
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth.models import User
from eventtracking import tracker
from opaque_keys.edx.keys import CourseKey

REQUEST_CONTEXT = "edx.request"
COURSE_CONTEXT = "course"


def course_context_from_course_id(course_id: CourseKey | None) -> dict:
    """The course part of an event's context, as edx-platform's function of that name returns it."""
    if course_id is None:
        return {"course_id": "", "org_id": "", "enterprise_uuid": ""}
    return {"course_id": str(course_id), "org_id": course_id.org, "enterprise_uuid": ""}


def request_context(user: User, *, path: str, session_key: str = "", referer: str = "") -> dict:
    """What TrackMiddleware records of a request; the session key is hashed, as upstream."""
    return {
        "user_id": user.id,
        "username": user.username,
        "session": hashlib.md5(session_key.encode(), usedforsecurity=False).hexdigest() if session_key else "",
        "ip": "127.0.0.1",
        "agent": "Mozilla/5.0 (X11; Linux x86_64) devstack",
        "host": "localhost:18000",
        "path": path,
        "referer": referer,
        "accept_language": "en-US,en;q=0.9",
        "client_id": "",
    }


@contextmanager
def request(
    user: User, course_id: CourseKey | None, *, path: str, session_key: str = "", referer: str = ""
) -> Iterator:
    """Emit events as if handling ``path`` for ``user`` in a course: both contexts entered, as in a request."""
    track = tracker.get_tracker()
    with (
        track.context(REQUEST_CONTEXT, request_context(user, path=path, session_key=session_key, referer=referer)),
        track.context(COURSE_CONTEXT, course_context_from_course_id(course_id)),
    ):
        yield
