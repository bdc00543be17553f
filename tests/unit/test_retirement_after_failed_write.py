"""
Retirement converges when a drain's INSERT failed after ClickHouse applied it: the rows attempted may have
landed, so the drain looks at them as it does after a write that returned, and queues the retirement again.
"""

from __future__ import annotations

import logging

import pytest
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import UserProfile

from aspects_sink import delivery, retirement
from aspects_sink.models import OutboxEntry, RetiredUser
from aspects_sink.sinks.registry import get_sink
from aspects_sink.transport import ClickHouseUnavailable

pytestmark = pytest.mark.django_db(transaction=True)


class AppliedThenTimedOut:
    """
    The real transport, but the first INSERT races a retirement and then times out: just before it, the user
    is recorded as retired and the retirement drained (its DELETE finished); the INSERT reaches ClickHouse
    and the client call fails anyway, as a timeout after the server applied it does.
    """

    def __init__(self, transport, user_id):
        self.transport = transport
        self.user_id = user_id
        self.raised = None

    def insert(self, batch, settings=None):
        if self.raised is None:
            retirement.record([self.user_id])
            assert delivery.drain(retirement.RETIREMENT_SINK, self.transport).delivered == 1
            self.transport.insert(batch, settings)
            self.raised = ClickHouseUnavailable("Timeout: read timed out after the server applied the INSERT")
            raise self.raised
        return self.transport.insert(batch, settings)

    def command(self, *args, **kwargs):
        return self.transport.command(*args, **kwargs)


def test_an_insert_applied_but_failed_queues_the_retirement_again_and_converges(embedded_clickhouse, pii):
    user = create_user("raced", "raced@example.com", name="Raced", city="Lyon")
    profile = UserProfile.objects.get(user=user)
    profile.city = "Paris"
    profile.save()
    OutboxEntry.objects.exclude(sink="user_profile").delete()  # only the profile change is pending
    report = delivery.drain("user_profile", AppliedThenTimedOut(embedded_clickhouse, user.id))
    assert report.delivered == 0 and report.retried > 0  # given back: ClickHouse was "unavailable"
    assert retirement.find_personal_data(embedded_clickhouse, [user.id])  # the row landed after the DELETE
    assert OutboxEntry.objects.filter(sink=retirement.RETIREMENT_SINK, object_id=str(user.id)).exists()
    assert RetiredUser.objects.get(user_id=user.id).scrubbed_at is None
    delivery.drain(retirement.RETIREMENT_SINK, embedded_clickhouse)  # nobody acts: the queued retirement runs
    assert retirement.find_personal_data(embedded_clickhouse, [user.id]) == []


def test_a_failing_look_is_logged_and_the_original_error_is_raised_unchanged(
    embedded_clickhouse, pii, monkeypatch, caplog
):
    user = create_user("looked", "looked@example.com", name="Looked", city="Lyon")
    timeout = ClickHouseUnavailable("Timeout: read timed out")

    class TimedOut:
        def insert(self, batch, settings=None):
            raise timeout

    def lms_database_down(_writes):
        raise RuntimeError("the LMS database is gone")

    monkeypatch.setattr(retirement, "retired_users_in", lms_database_down)
    with caplog.at_level(logging.WARNING), pytest.raises(ClickHouseUnavailable) as raised:
        delivery.write(get_sink("user_profile"), [str(user.id)], TimedOut())
    assert raised.value is timeout
    assert "the LMS database is gone" in caplog.text
