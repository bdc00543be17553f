"""
Batches go in one after the other in key order, each is acknowledged only once ClickHouse took it, and a run that
stops on a failed INSERT keeps exactly what went in.
"""

import pytest
from common.djangoapps.student.models import UserProfile
from django.core.management import CommandError

from aspects_sink.backfill.checkpoints import RangeCheckpoint
from aspects_sink.backfill.source import BackfillSource
from aspects_sink.models import DumpCheckpoint
from aspects_sink.transport import ClickHouseTransport

pytestmark = pytest.mark.django_db

TABLE = "event_sink_backfill.user_profile"


def profile_ids():
    return list(UserProfile.objects.order_by("id").values_list("id", flat=True))


@pytest.fixture
def events(monkeypatch):
    """What happened, in order: ("read", first key), ("inserted", ids), ("acknowledged", last key)."""
    happened = []
    insert, page, acknowledge = ClickHouseTransport.insert, BackfillSource._page, RangeCheckpoint.acknowledge

    def recorded_insert(self, batch, settings=None):
        written = insert(self, batch, settings)
        if batch.table == "user_profile":
            happened.append(("inserted", list(batch.columns[batch.column_names.index("id")])))
        return written

    def recorded_page(self, after, *arguments):
        found = page(self, after, *arguments)
        if found is not None:
            happened.append(("read", found.keys[0]))
        return found

    def recorded_acknowledge(self, last, **counts):
        happened.append(("acknowledged", int(last)))
        return acknowledge(self, last, **counts)

    monkeypatch.setattr(ClickHouseTransport, "insert", recorded_insert)
    monkeypatch.setattr(BackfillSource, "_page", recorded_page)
    monkeypatch.setattr(RangeCheckpoint, "acknowledge", recorded_acknowledge)
    return happened


def test_batches_go_in_in_key_order_and_each_is_acknowledged_after_its_insert(
    backfill_clickhouse, dump, learners, events
):
    learners(8)
    ids = profile_ids()

    dump("--object", "user_profile", "--batch_size", "3")

    inserted = [keys for event, keys in events if event == "inserted"]
    assert inserted == [ids[0:3], ids[3:6], ids[6:8]]
    acknowledged = [key for event, key in events if event == "acknowledged"]
    assert acknowledged == [ids[2], ids[5], ids[7]]
    for keys in inserted:
        assert events.index(("inserted", keys)) < events.index(("acknowledged", keys[-1]))
    assert backfill_clickhouse.column("user_profile", "id") == ids


@pytest.fixture
def table_gone_at_the_second_insert(backfill_clickhouse, monkeypatch):
    """
    The sink's table renamed away just before the second INSERT (as a wrong schema would be): ClickHouse refuses
    it. Returns what puts the table back and the INSERTs as they were.
    """
    insert, calls = ClickHouseTransport.insert, []

    def insert_after_the_table_went(self, batch, settings=None):
        calls.append(batch)
        if len(calls) == 2:
            backfill_clickhouse.command(f"RENAME TABLE {TABLE} TO {TABLE}_away")
        return insert(self, batch, settings)

    def restore():
        monkeypatch.setattr(ClickHouseTransport, "insert", insert)
        if int(backfill_clickhouse.command(f"EXISTS TABLE {TABLE}_away")):
            backfill_clickhouse.command(f"RENAME TABLE {TABLE}_away TO {TABLE}")

    monkeypatch.setattr(ClickHouseTransport, "insert", insert_after_the_table_went)
    yield restore
    restore()


def test_a_failed_insert_stops_the_run_at_the_last_batch_clickhouse_took_and_resume_sends_the_rest(
    backfill_clickhouse, dump, summary, learners, table_gone_at_the_second_insert
):
    learners(8)
    ids = profile_ids()

    with pytest.raises(CommandError, match=r"^user_profile: .*Run again with --resume"):
        dump("--object", "user_profile", "--batch_size", "3")

    checkpoint = DumpCheckpoint.objects.get(sink="user_profile")
    assert (checkpoint.state, checkpoint.rows, checkpoint.last_acknowledged) == (
        DumpCheckpoint.STOPPED,
        3,
        str(ids[2]),
    )
    table_gone_at_the_second_insert()
    assert backfill_clickhouse.column("user_profile", "id") == ids[:3]

    output = dump("--object", "user_profile", "--resume")

    assert summary(output)["user_profile"] == (5, 0, 0)
    assert backfill_clickhouse.column("user_profile", "id") == ids
