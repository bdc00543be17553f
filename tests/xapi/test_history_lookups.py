"""
The history import looks each learner up once: event-routing-backends memoizes a learner's anonymous id for
its last 128 learners only, and a history interleaves more, so each of their events would cost the LMS
database its queries again (the bulk of an import's time, before this).
"""

from __future__ import annotations

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from xmodule.modulestore.course_builder import create_course

from tests.support.xapi import raw_rows

LEARNERS = 150  # more than event-routing-backends' cache of 128


@pytest.fixture
def tracking_log(db, tmp_path):
    """Each learner enrolls once; the log holds their events three times over, learner after learner."""
    course = activity.CourseBlocks.of(create_course("ManyX", "Lookups", "2026", "Many learners", blocks=20))
    learners = [create_user(f"many{i}", f"many{i}@example.com", name=f"Many {i}") for i in range(LEARNERS)]
    with activity.recording() as events:
        for learner in learners:
            activity.emit(learner, course, activity.round_of_events(learner, course)[:1])
    path = tmp_path / "tracking.log"
    path.write_text("".join(activity.tracking_log_line(event) + "\n" for event in events) * 3)
    return path


def test_each_learner_is_looked_up_once_however_many_learners_the_history_interleaves(
    devstack_clickhouse, tracking_log
):
    with CaptureQueriesContext(connection) as queries:
        call_command("aspects_sink_xapi_history", str(tracking_log), "--no-progress", "--batch_size", "100000")
    assert raw_rows(devstack_clickhouse, final=True) == LEARNERS  # a statement repeated is one row
    lookups = [query["sql"] for query in queries.captured_queries if "auth_user" in query["sql"]]
    assert len(lookups) <= 2 * LEARNERS  # the first round's; the next two rounds cost nothing
