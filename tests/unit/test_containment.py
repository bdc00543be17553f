"""
Every failure contained (issue 11): errors sorted by ClickHouse's code into unavailable, configuration and
rejected; one bounded isolation routine; no platform request hurt by a dead cache or a failed outbox write;
leases that only their holder can settle; blocks before overviews; no column dropped silently; memory
bounded per drain; a batch that kills its worker split and finally parked.
"""

from __future__ import annotations

import logging

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import UserProfile
from django.core.cache.backends.redis import RedisCache
from django.db import connection, transaction
from django.db.utils import OperationalError as LmsOperationalError
from xmodule.modulestore.course_builder import create_course

from aspects_sink import delivery, isolation, outbox, scheduling
from aspects_sink.models import OutboxEntry, SinkHealth
from aspects_sink.transport import ClickHouseMisconfigured, ClickHouseRejected, ClickHouseUnavailable, ColumnBatch
from aspects_sink.transport.client import classify
from tests.support.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class Recording:
    """The real transport, recording each INSERT's table and rows; ``fail`` may raise instead of inserting."""

    def __init__(self, transport, fail=None):
        self.transport = transport
        self.fail = fail
        self.inserts: list[tuple[str, int]] = []
        self.commands = 0

    def insert(self, batch, settings=None):
        self.inserts.append((batch.table, batch.row_count))
        if self.fail:
            self.fail(batch)
        return self.transport.insert(batch, settings)

    def command(self, *args, **kwargs):
        self.commands += 1
        if self.fail:
            self.fail(None)
        return self.transport.command(*args, **kwargs)

    def __getattr__(self, name):
        """Reads (``rows``, ``config``) go to the real transport unrecorded."""
        return getattr(self.transport, name)


def users(count: int, prefix: str = "u") -> list:
    return [create_user(f"{prefix}{i}", f"{prefix}{i}@example.com", city="Lyon") for i in range(count)]


def entries(sink: str = "user_profile") -> list[OutboxEntry]:
    return list(OutboxEntry.objects.filter(sink=sink).order_by("id"))


def due_now(sink: str = "user_profile") -> None:
    OutboxEntry.objects.filter(sink=sink).update(available_at=entries(sink)[0].created)


# -- 1. three classes of error, by ClickHouse's code ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (DatabaseError("Code: 201. DB::Exception: Quota exceeded (QUOTA_EXCEEDED)"), ClickHouseUnavailable),
        (DatabaseError("server error", code=319), ClickHouseUnavailable),  # UNKNOWN_STATUS_OF_INSERT
        (DatabaseError("Code: 33. DB::Exception: Cannot read all data"), ClickHouseUnavailable),
        (DatabaseError("server error", code=241), ClickHouseUnavailable),  # MEMORY_LIMIT_EXCEEDED
        (OperationalError("connection refused"), ClickHouseUnavailable),
        (DatabaseError("Code: 60. DB::Exception: Table x does not exist"), ClickHouseMisconfigured),
        (DatabaseError("Received ClickHouse exception, code: 81", code=81), ClickHouseMisconfigured),
        (OperationalError("retried", code=497), ClickHouseMisconfigured),  # ACCESS_DENIED after an HTTP retry
        (DatabaseError("Code: 516. DB::Exception: Authentication failed"), ClickHouseMisconfigured),
        (RuntimeError("Code: 16. DB::Exception: No such column mode in table"), ClickHouseMisconfigured),  # chDB
        (DatabaseError("Code: 469. DB::Exception: Constraint violated", code=469), ClickHouseRejected),
    ],
)
def test_errors_are_sorted_by_clickhouse_code(error, kind):
    classified = classify(error, "insert")
    assert type(classified) is kind


def test_chdb_names_an_unknown_table_a_configuration_error(embedded_clickhouse):
    with pytest.raises(ClickHouseMisconfigured) as raised:
        embedded_clickhouse.command("INSERT INTO event_sink.no_such_table VALUES (1)")
    assert raised.value.code == 60


def test_retries_while_clickhouse_is_unavailable_never_count(embedded_clickhouse, pii, settings):
    settings.ASPECTS_SINK_RETRY_BASE_SECONDS = 3
    users(1)

    def down(batch):
        raise ClickHouseUnavailable("connection refused")

    delays = []
    for _ in range(settings.ASPECTS_SINK_MAX_ATTEMPTS + 2):
        delays.append(delivery.drain("user_profile", Recording(embedded_clickhouse, down)).next_run_in)
        due_now()
    assert 1.5 <= delays[0] <= 3 and 3 <= delays[1] <= 6  # jittered exponential backoff
    assert [(entry.attempts, entry.state) for entry in entries()] == [(0, OutboxEntry.PENDING)] * 2
    assert SinkHealth.objects.get(sink="user_profile").last_error_class == SinkHealth.UNAVAILABLE


def test_a_renamed_table_pauses_the_sink_loudly_and_it_resumes_once_fixed(embedded_clickhouse, pii, settings, caplog):
    settings.ASPECTS_SINK_RETRY_BASE_SECONDS = 0
    settings.ASPECTS_SINK_RETRY_MAX_SECONDS = 0  # every probe due at once, for the test
    users(10)
    embedded_clickhouse.command("RENAME TABLE event_sink.user_profile TO event_sink.user_profile_moved")
    embedded_clickhouse._table_columns.clear()
    caplog.set_level(logging.ERROR, "aspects_sink")
    for _ in range(4):
        report = delivery.drain("user_profile", embedded_clickhouse)
        assert report.delivered == 0
    assert sum("user_profile is paused" in message for message in caplog.messages) == 4
    row = SinkHealth.objects.get(sink="user_profile")
    assert (row.last_error_class, row.paused_since is not None) == (SinkHealth.CONFIGURATION, True)
    assert "user_profile" in row.last_error
    assert {(entry.attempts, entry.state) for entry in entries()} == {(0, OutboxEntry.PENDING)}

    embedded_clickhouse.command("RENAME TABLE event_sink.user_profile_moved TO event_sink.user_profile")
    assert delivery.drain("user_profile", embedded_clickhouse).delivered == 20
    assert SinkHealth.objects.get(sink="user_profile").paused_since is None
    assert embedded_clickhouse.command("SELECT count() FROM event_sink.user_profile FINAL") == 10


def test_an_lms_database_error_is_never_split_nor_blamed_on_objects(embedded_clickhouse, pii):
    users(8)

    def deadlock(batch):
        raise LmsOperationalError("(1213, 'Deadlock found when trying to get lock')")

    recording = Recording(embedded_clickhouse, deadlock)
    report = delivery.drain("user_profile", recording)
    assert (report.delivered, report.parked, len(recording.inserts)) == (0, 0, 1)
    assert {(entry.attempts, entry.state) for entry in entries()} == {(0, OutboxEntry.PENDING)}


def test_splitting_a_rejected_batch_is_bounded(embedded_clickhouse, pii):
    users(64)

    def reject_all(batch):
        raise ClickHouseRejected("Code: 469. DB::Exception: Constraint violated")

    recording = Recording(embedded_clickhouse, reject_all)
    delivery.drain("user_profile", recording)
    assert len(recording.inserts) <= isolation.Limits.for_batch(64).sends < 2 * 64
    assert not OutboxEntry.objects.filter(state=OutboxEntry.DEAD).exists()
    assert {entry.attempts for entry in entries()} == {1}  # counted: the next claims split them further


def test_statements_are_one_unit_never_split_into_many_mutations(embedded_clickhouse, pii):
    for user in users(8, prefix="retiring"):
        outbox.enqueue("user_retirement", [user.id])

    def reject(batch):
        raise ClickHouseRejected("Code: 36. DB::Exception: Bad mutation")

    recording = Recording(embedded_clickhouse, reject)
    report = delivery.drain("user_retirement", recording)
    assert recording.commands == 1
    assert report.retried == 8 and report.parked == 0


# -- 3. nothing the plugin does fails a platform request ---------------------------------------------------


def test_a_dead_redis_never_fails_a_platform_save(embedded_clickhouse, pii, monkeypatch, caplog):
    dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    monkeypatch.setattr(scheduling, "cache", dead)
    monkeypatch.setattr(scheduling, "_scheduled_until", {})
    monkeypatch.setattr(scheduling, "_cache_down_until", [0.0])
    user = create_user("redisdown", "redisdown@example.com")
    with transaction.atomic():
        profile = UserProfile.objects.get(user=user)
        profile.city = "Oslo"
        profile.save()  # commits, then wakes a drain through a cache that refuses connections
    assert scheduling.cache_resting()  # the next requests leave the cache alone for a while
    assert len(entries()) == 3
    assert "the cache failed" in caplog.text


def test_a_failed_outbox_write_leaves_the_platform_transaction_intact(embedded_clickhouse, pii, caplog):
    user = create_user("outboxdown", "outboxdown@example.com")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE aspects_sink_outboxentry RENAME TO aspects_sink_outboxentry_away")
    try:
        with transaction.atomic():
            profile = UserProfile.objects.get(user=user)
            profile.city = "Quito"
            profile.save()  # the outbox INSERT fails inside the platform's transaction
            UserProfile.objects.filter(user=user).update(bio="saved after the failure")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE aspects_sink_outboxentry_away RENAME TO aspects_sink_outboxentry")
    profile = UserProfile.objects.get(user=user)
    assert (profile.city, profile.bio) == ("Quito", "saved after the failure")
    failed = [record for record in caplog.records if record.levelno == logging.ERROR and "outbox" in record.message]
    assert failed and str(user.id) in failed[0].message
    assert SinkHealth.objects.get(sink="user_profile").failed_outbox_writes == 1


# -- 6. leases: only the holder settles its entries -----------------------------------------------------------


def test_a_worker_whose_lease_ran_out_changes_nothing_the_new_holder_has(embedded_clickhouse, pii):
    users(3)
    queue = outbox.queue("user_profile")
    first = queue.claim(100)
    OutboxEntry.objects.update(available_at=entries()[0].created)  # the first worker's lease ran out
    second = queue.claim(100)  # halved for entries tried once: still all of them
    assert {entry.id for entry in first} == {entry.id for entry in second}

    queue.acknowledge(first)
    queue.park(first, RuntimeError("stale"))
    queue.retry_later(first, RuntimeError("stale"))
    assert {(entry.state, entry.claim) for entry in entries()} == {(OutboxEntry.PENDING, second[0].claim)}
    queue.acknowledge(second)
    assert entries() == []


# -- 2. crash loops: attempts counted at claim; a killing batch split, then parked ------------------------


def test_a_batch_that_keeps_killing_its_worker_is_split_then_parked(embedded_clickhouse, pii, settings):
    settings.ASPECTS_SINK_MAX_ATTEMPTS = 3
    users(4)  # 8 entries
    queue = outbox.queue("user_profile")
    sizes = []
    for _ in range(20):  # more than enough claims to reach a verdict
        claimed = queue.claim(8)
        if not claimed:
            break
        sizes.append(len(claimed))  # ... and the worker is killed: no outcome, the lease runs out
        OutboxEntry.objects.filter(state=OutboxEntry.PENDING).update(available_at=entries()[0].created)
    assert sizes[:3] == [8, 4, 2]
    dead = OutboxEntry.objects.filter(state=OutboxEntry.DEAD)
    assert dead.count() == 8
    assert all("worker" in entry.last_error for entry in dead)


def test_a_live_course_drain_holds_a_bounded_number_of_courses(embedded_clickhouse):
    keys = [str(create_course("Bound", f"C{n:02d}", "2025", f"Course {n}", blocks=3)) for n in range(25)]
    outbox.enqueue("course_overviews", keys)
    recording = Recording(embedded_clickhouse)
    delivery.drain("course_overviews", recording)
    overviews = [rows for table, rows in recording.inserts if table == "course_overviews"]
    assert sum(overviews) >= 25 and max(overviews) <= 10


# -- 4. blocks before the overview ----------------------------------------------------------------------------


def test_a_course_whose_blocks_fail_is_not_shown_as_current(embedded_clickhouse):
    key = str(create_course("Order", "C1", "2025", "Ordered", blocks=5))
    OutboxEntry.objects.all().delete()
    outbox.enqueue("course_overviews", [key])

    def blocks_rejected(batch):
        if batch is not None and batch.table == "course_blocks":
            raise ClickHouseRejected("Code: 27. DB::Exception: Cannot parse input")

    delivery.drain("course_overviews", Recording(embedded_clickhouse, blocks_rejected))
    assert embedded_clickhouse.command("SELECT count() FROM event_sink.course_overviews") == 0


# -- 7. no column dropped silently ------------------------------------------------------------------------------


def test_a_column_the_table_lacks_is_a_configuration_error_naming_it(embedded_clickhouse, pii):
    embedded_clickhouse.command("ALTER TABLE event_sink.user_profile DROP COLUMN city")
    embedded_clickhouse._table_columns.clear()
    users(2)
    report = delivery.drain("user_profile", embedded_clickhouse)
    assert report.delivered == 0
    row = SinkHealth.objects.get(sink="user_profile")
    assert row.last_error_class == SinkHealth.CONFIGURATION and row.paused_since is not None
    assert "event_sink.user_profile" in row.last_error and "city" in row.last_error


def test_a_table_aspects_created_without_version_still_takes_rows(embedded_clickhouse, caplog):
    embedded_clickhouse.command("CREATE TABLE event_sink.legacy (name String, id Int32) ENGINE = MergeTree ORDER BY id")
    batch = ColumnBatch(
        "legacy",
        ("id", "name", "version"),
        ("Int32", "String", "UInt64"),
        ([1, 2], ["a", "b"], [7, 7]),
        optional_columns=frozenset({"version"}),
    )
    assert embedded_clickhouse.insert(batch) == 2
    assert embedded_clickhouse.rows("SELECT id, name FROM event_sink.legacy ORDER BY id") == [(1, "a"), (2, "b")]
    assert "has no column version" in caplog.text


# -- 8. a day's outage: the queue's size is alarmed, nothing dropped --------------------------------------------


def test_a_queue_beyond_its_alarm_bound_is_reported_at_every_drain(embedded_clickhouse, pii, settings, caplog):
    settings.ASPECTS_SINK_QUEUE_ALARM_ENTRIES = 4
    users(3)  # 6 entries

    def down(batch):
        raise ClickHouseUnavailable("connection refused")

    delivery.drain("user_profile", Recording(embedded_clickhouse, down))
    alarms = [record for record in caplog.records if record.levelno == logging.ERROR and "alarm at 4" in record.message]
    assert alarms and "user_profile" in alarms[0].message
    assert len(entries()) == 6  # nothing dropped


def test_a_retirement_worn_out_is_parked_alone_the_fresh_ones_in_its_batch_are_retried(
    embedded_clickhouse, pii, settings
):
    """
    Retirement's mutations are one unit (never split): a batch failing for its data, where one entry had its
    last try, parks that entry only. The retirements claimed with it for the first time are tried again.
    """
    from aspects_sink import retirement

    settings.ASPECTS_SINK_MAX_ATTEMPTS = 3
    worn, fresh = users(2, prefix="retiring")
    retirement.record([worn.id, fresh.id])
    OutboxEntry.objects.filter(sink="user_retirement", object_id=str(worn.id)).update(attempts=2)

    def refused(_batch):
        raise ClickHouseRejected("Code: 497. DB::Exception: not enough privileges (ACCESS_DENIED)")

    report = delivery.drain("user_retirement", Recording(embedded_clickhouse, fail=refused))

    states = {entry.object_id: (entry.state, entry.attempts) for entry in entries("user_retirement")}
    assert states == {str(worn.id): (OutboxEntry.DEAD, 3), str(fresh.id): (OutboxEntry.PENDING, 1)}
    assert (report.parked, report.retried) == (1, 1)
