"""Retirement removes a user's personal data from every table that holds it, in one mutation per table."""

from __future__ import annotations

import pytest
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import CourseEnrollment
from opaque_keys.edx.keys import CourseKey

from aspects_sink import delivery
from aspects_sink.sinks.base import Stamp
from aspects_sink.sinks.registry import get_sink

pytestmark = pytest.mark.django_db(transaction=True)


def drain_all():
    for name in ("user_profile", "external_id", "course_enrollment", "user_retirement"):
        delivery.drain(name)


def test_rows_of_pii_sinks_are_deleted_and_personal_columns_blanked(embedded_clickhouse, pii, settings):
    settings.ASPECTS_SINK_RETIREMENT_WAIT = True
    course = CourseKey.from_string("course-v1:edX+R+1")
    keep, gone = create_user("keep", "keep@example.com", name="Keep"), create_user("gone", "gone@x.org", name="Gone")
    for user in (keep, gone):
        CourseEnrollment.enroll(user, course)
    drain_all()
    from aspects_sink.receivers import record_change

    record_change("user_retirement", gone.id)
    drain_all()
    assert embedded_clickhouse.rows("SELECT username FROM event_sink.user_profile FINAL") == [("keep",)]
    enrollments = embedded_clickhouse.rows(
        "SELECT user_id, username FROM event_sink.course_enrollment FINAL ORDER BY user_id"
    )
    assert enrollments == [(keep.id, "keep"), (gone.id, "")]


def test_one_statement_per_table_for_a_whole_batch_and_on_cluster(settings):
    settings.ASPECTS_SINK_CLUSTER = {"name": "analytics", "shards": 2}
    statements = get_sink("user_retirement").writes_for(["3", "1", "2"], Stamp(1))
    assert len(statements) == 3  # user_profile, external_id (deleted), course_enrollment (blanked)
    assert all(" ON CLUSTER `analytics` " in statement.sql for statement in statements)
    assert all("_local`" in statement.sql for statement in statements)
    assert all(statement.parameters["user_ids"] == [1, 2, 3] for statement in statements)


def test_names_that_are_not_sinks_are_ignored_not_fatal(settings):
    settings.EVENT_SINK_CLICKHOUSE_PII_MODELS = ["user_profile", "auth_user"]  # Tutor's old default list
    statements = get_sink("user_retirement").writes_for(["1"], Stamp(1))
    assert {statement.sql.split()[2] for statement in statements} == {
        "`event_sink`.`user_profile`",
        "`event_sink`.`external_id`",
        "`event_sink`.`course_enrollment`",
    }


def test_a_retired_learners_enrollment_sent_again_keeps_its_username_blank(embedded_clickhouse, pii):
    """A re-dump (rebuilding ClickHouse) or a late re-send must not bring back what retirement blanked."""
    from openedx.core.djangoapps.user_api.accounts.api import retire_user

    from aspects_sink.receivers import record_change

    course = CourseKey.from_string("course-v1:edX+R+2")
    gone = create_user("leaver", "leaver@example.com", name="Leaver")
    CourseEnrollment.enroll(gone, course)
    retire_user(gone)
    drain_all()
    record_change("course_enrollment", gone.id)  # as dump_data_to_clickhouse sends every enrollment again
    drain_all()
    assert embedded_clickhouse.rows("SELECT username FROM event_sink.course_enrollment FINAL") == [("",)]
