"""Sink health: what the drains record for operators, in the LMS database."""

import pytest

from aspects_sink import health
from aspects_sink.models import SinkHealth

pytestmark = pytest.mark.django_db


def test_deliveries_add_up_and_end_a_pause():
    health.record_failure("user_profile", SinkHealth.CONFIGURATION, "UNKNOWN_TABLE", pause=True)
    health.record_delivery("user_profile", rows=10, inserts=1)
    health.record_delivery("user_profile", rows=5, inserts=2)

    row = health.snapshot()["user_profile"]
    assert (row.rows_delivered, row.inserts, row.paused_since) == (15, 3, None)
    assert row.last_success_at is not None
    assert row.last_error_class == SinkHealth.CONFIGURATION


def test_a_pause_keeps_the_time_it_began():
    health.record_failure("course_enrollment", SinkHealth.CONFIGURATION, "first", pause=True)
    began = SinkHealth.objects.get(sink="course_enrollment").paused_since
    health.record_failure("course_enrollment", SinkHealth.CONFIGURATION, "again", pause=True)

    row = SinkHealth.objects.get(sink="course_enrollment")
    assert (row.paused_since, row.last_error) == (began, "again")


def test_an_unavailable_clickhouse_does_not_pause():
    health.record_failure("xapi_statements", SinkHealth.UNAVAILABLE, "connection refused")

    assert SinkHealth.objects.get(sink="xapi_statements").paused_since is None
