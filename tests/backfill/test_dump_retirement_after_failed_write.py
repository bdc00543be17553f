"""
Retirement converges when a backfill's INSERT failed after ClickHouse applied it: the rows attempted may have
landed, and the run that follows (a retry, ``--resume``) reads the learner with the retirement exclusion and
writes nothing personal, so the backfill looks at them as it does after a write that returned and queues the
retirement again.
"""

import pytest
from django.core.management import CommandError

from aspects_sink import delivery, retirement
from aspects_sink.connection import get_transport
from aspects_sink.models import OutboxEntry, RetiredUser
from aspects_sink.transport import ClickHouseTransport, ClickHouseUnavailable

pytestmark = pytest.mark.django_db


@pytest.fixture
def applied_then_timed_out(backfill_clickhouse, monkeypatch):
    """
    The real transport, but the first INSERT races a retirement and then times out: just before it, the user
    given is recorded as retired and the retirement drained (its DELETE finished); the INSERT reaches ClickHouse
    and the client call fails anyway, as a timeout after the server applied it does. Every other INSERT (the
    retirement's own included) goes through. Returns the errors raised.
    """
    insert, raced, raised = ClickHouseTransport.insert, [], []

    def race(user_id):
        def insert_then_time_out(self, batch, settings=None):
            if raced:
                return insert(self, batch, settings)
            raced.append(batch)
            retirement.record([user_id])
            assert delivery.drain(retirement.RETIREMENT_SINK, self).delivered == 1
            insert(self, batch, settings)
            raised.append(ClickHouseUnavailable("Timeout: read timed out after the server applied the INSERT"))
            raise raised[-1]

        monkeypatch.setattr(ClickHouseTransport, "insert", insert_then_time_out)
        return raised

    return race


def test_an_insert_applied_but_failed_queues_the_retirement_again_and_converges(
    backfill_clickhouse, dump, learners, applied_then_timed_out
):
    (user,) = learners(1, prefix="raced")
    OutboxEntry.objects.all().delete()  # the live path's entries for the new learner: none is pending
    raised = applied_then_timed_out(user.id)
    transport = get_transport()

    with pytest.raises(CommandError, match=r"^user_profile: .*Run again with --resume"):
        dump("--object", "user_profile")

    assert len(raised) == 1
    assert retirement.find_personal_data(transport, [user.id])  # the row landed after the DELETE
    assert OutboxEntry.objects.filter(sink=retirement.RETIREMENT_SINK, object_id=str(user.id)).exists()
    assert RetiredUser.objects.get(user_id=user.id).scrubbed_at is None
    dump("--object", "user_profile", "--resume")  # writes nothing personal of the learner, now excluded
    delivery.drain(retirement.RETIREMENT_SINK, transport)  # nobody acts: the queued retirement runs
    assert retirement.find_personal_data(transport, [user.id]) == []
