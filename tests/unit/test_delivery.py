"""
The outbox and its drain, in process against the embedded ClickHouse: coalescing, one INSERT per
table, acknowledgement only after ClickHouse, backoff while it is away, bad objects isolated and parked.
"""

from __future__ import annotations

import datetime

import pytest
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import UserProfile
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aspects_sink import delivery, outbox
from aspects_sink.models import OutboxEntry, VersionTick
from aspects_sink.sinks.base import SerializationError, Statement
from aspects_sink.sinks.registry import get_sink
from aspects_sink.transport import ClickHouseRejected, ClickHouseUnavailable

pytestmark = pytest.mark.django_db(transaction=True)


class CountingTransport:
    """The real transport, counting inserts; optionally failing like an unavailable or rejecting server."""

    def __init__(self, transport, fail_with=None, reject_when=None):
        self.transport = transport
        self.inserts = 0
        self.fail_with = fail_with
        self.reject_when = reject_when

    def insert(self, batch, settings=None):
        if self.fail_with:
            raise self.fail_with
        if self.reject_when and any(
            self.reject_when(value) for value in batch.columns[batch.column_names.index("city")]
        ):
            raise ClickHouseRejected("Code: 469. DB::Exception: Constraint `city` violated (VIOLATED_CONSTRAINT)")
        self.inserts += 1
        return self.transport.insert(batch, settings)

    def command(self, *args, **kwargs):
        return self.transport.command(*args, **kwargs)


def profiles(embedded_clickhouse, final=True):
    return embedded_clickhouse.rows(
        f"SELECT user_id, city FROM event_sink.user_profile {'FINAL' if final else ''} ORDER BY user_id"
    )


def test_repeated_changes_coalesce_into_one_row_and_one_insert(embedded_clickhouse, pii):
    user = create_user("ada", "ada@example.com", name="Ada", city="Lyon")
    for city in ("Paris", "Rome", "Oslo"):
        profile = UserProfile.objects.get(user=user)
        profile.city = city
        profile.save()
    assert OutboxEntry.objects.filter(sink="user_profile").count() == 5  # user + 4 profile saves
    counting = CountingTransport(embedded_clickhouse)
    report = delivery.drain("user_profile", counting)
    assert (report.delivered, counting.inserts) == (5, 1)
    assert profiles(embedded_clickhouse, final=False) == [(user.id, "Oslo")]
    assert not OutboxEntry.objects.filter(sink="user_profile").exists()


def test_the_newest_read_wins_whatever_order_rows_arrive_in(embedded_clickhouse, pii):
    user = create_user("bea", "bea@example.com", city="Lyon")
    sink = get_sink("user_profile")
    old_version, new_version = VersionTick.allocate(), VersionTick.allocate()
    profile = UserProfile.objects.get(user=user)
    profile.city = "Paris"
    profile.save()
    from aspects_sink.sinks.base import Stamp

    embedded_clickhouse.insert(sink.serialize(sink.queryset_for([user.id]), Stamp(new_version)))
    profile.city = "Stale"
    profile.save()
    embedded_clickhouse.insert(sink.serialize(sink.queryset_for([user.id]), Stamp(old_version)))  # a slow worker
    assert profiles(embedded_clickhouse) == [(user.id, "Paris")]


def test_a_user_found_without_profile_deletes_only_rows_older_than_that_read(embedded_clickhouse, pii):
    """
    A batch that found a user without a profile deletes the user's rows, but only those written before its read:
    a profile created just after, and sent meanwhile by a later read (a backfill), stays.
    """
    from django.contrib.auth.models import User

    from aspects_sink.sinks.base import Stamp

    sink = get_sink("user_profile")
    user = User.objects.create(username="late", email="late@example.com")  # an account created in two steps
    stale = sink.table_spec.batch([[7], [user.id]] + [["Stale"]] * 18, Stamp(VersionTick.allocate()))
    embedded_clickhouse.insert(stale)  # a row of an earlier profile of the account
    found_missing = sink.writes_for([user.id], Stamp(VersionTick.allocate()))  # the worker's read: no profile yet
    UserProfile.objects.create(user=user, name="Late", city="Turku")
    embedded_clickhouse.insert(sink.serialize(sink.queryset_for([user.id]), Stamp(VersionTick.allocate())))
    for write in found_missing:  # the worker's writes land after the backfill's
        if isinstance(write, Statement):
            embedded_clickhouse.command(write.sql, write.parameters, write.settings)
    assert profiles(embedded_clickhouse, final=False) == [(user.id, "Turku")]


def test_a_rolled_back_change_leaves_nothing_to_send(embedded_clickhouse):
    with pytest.raises(RuntimeError), transaction.atomic():
        create_user("ghost", "ghost@example.com")
        raise RuntimeError("the request failed")
    assert not OutboxEntry.objects.exists()
    assert not embedded_clickhouse.rows("SELECT * FROM event_sink.user_profile")


def test_unavailable_clickhouse_keeps_entries_and_backs_off(embedded_clickhouse, pii, settings):
    settings.ASPECTS_SINK_RETRY_BASE_SECONDS = 3
    create_user("cy", "cy@example.com")
    down = CountingTransport(embedded_clickhouse, fail_with=ClickHouseUnavailable("connection refused"))
    report = delivery.drain("user_profile", down)
    assert report.retried == 2 and report.delivered == 0
    assert 1.5 <= report.next_run_in <= 3  # jittered
    entries = list(OutboxEntry.objects.filter(sink="user_profile"))
    assert [(entry.attempts, entry.waits) for entry in entries] == [(0, 1), (0, 1)]  # an outage never counts
    assert all(entry.state == OutboxEntry.PENDING for entry in entries)
    # an outage never parks: the data is not at fault
    for _ in range(settings.ASPECTS_SINK_MAX_ATTEMPTS + 2):
        OutboxEntry.objects.update(available_at=entries[0].created)
        delivery.drain("user_profile", down)
    assert not OutboxEntry.objects.filter(state=OutboxEntry.DEAD).exists()


def test_a_rejected_object_is_isolated_retried_then_parked(embedded_clickhouse, pii, settings):
    settings.ASPECTS_SINK_MAX_ATTEMPTS = 2
    users = [create_user(f"u{i}", f"u{i}@example.com", city="Atlantis" if i == 5 else "Lyon") for i in range(10)]
    rejecting = CountingTransport(embedded_clickhouse, reject_when=lambda city: city == "Atlantis")
    first = delivery.drain("user_profile", rejecting)
    assert first.retried == 2 and first.parked == 0  # the bad user's two entries
    assert len(profiles(embedded_clickhouse)) == 9
    OutboxEntry.objects.update(available_at=OutboxEntry.objects.first().created)
    second = delivery.drain("user_profile", rejecting)
    assert second.parked == 2
    dead = OutboxEntry.objects.filter(state=OutboxEntry.DEAD)
    assert {(entry.sink, entry.object_id) for entry in dead} == {("user_profile", str(users[5].id))}
    assert all("VIOLATED_CONSTRAINT" in entry.last_error for entry in dead)


def test_an_object_that_cannot_be_serialized_is_named(embedded_clickhouse, pii):
    user = create_user("dee", "dee@example.com")
    sink = get_sink("user_profile")
    fetched = sink.fetch(sink.queryset_for([user.id]))
    fetched["id"] = ["not-a-number"]
    from aspects_sink.sinks.base import Stamp

    with pytest.raises(SerializationError, match=rf"user_profile {user.id}: column id"):
        sink.serialize_fetched(fetched, Stamp(1))


def test_dead_letters_can_be_replayed(embedded_clickhouse, pii):
    create_user("eve", "eve@example.com")
    OutboxEntry.objects.filter(sink="user_profile").update(state=OutboxEntry.DEAD, attempts=8, last_error="boom")
    assert outbox.replay_dead_letters(sink_name="user_profile") == 2
    assert delivery.drain("user_profile", embedded_clickhouse).delivered == 2


def test_versions_increase():
    first, second = VersionTick.allocate(), VersionTick.allocate()
    assert second > first


def test_a_publishing_storm_is_one_write_however_many_entries_it_left(embedded_clickhouse):
    """More changes of one course than a fan-out sink's batch of objects still make one dump: one version."""
    from xmodule.modulestore.course_builder import create_course

    course = create_course("StormX", "S1", "2026", blocks=5)
    outbox.enqueue("course_overviews", [str(course)])  # create_course's own publication is recorded too
    for _ in range(24):
        outbox.enqueue("course_overviews", [str(course)])
    delivery.drain("course_overviews", embedded_clickhouse)

    assert not OutboxEntry.objects.filter(sink="course_overviews").exists()  # every entry acknowledged
    versions = embedded_clickhouse.rows(
        "SELECT uniqExact(version) FROM event_sink.course_overviews WHERE course_key = {c:String}", {"c": str(course)}
    )
    assert versions == [(1,)]


def test_a_course_published_again_during_its_dump_waits_for_the_next_drain(embedded_clickhouse, settings):
    """
    A storm under load: the drain finds a full batch of one course's publications, and more arrive while it
    dumps them. Those wait for the next drain, an interval after this one started, instead of being dumped
    again at once by the same drain (a course is dumped at most once per interval, whatever drain it is in).
    """
    from xmodule.modulestore.course_builder import create_course

    settings.ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS = 30
    course = create_course("StormY", "S1", "2026", blocks=5)
    for _ in range(12):
        outbox.enqueue("course_overviews", [str(course)])

    class PublishingDuringTheDump(CountingTransport):
        def insert(self, batch, settings=None):
            if self.inserts == 0:
                outbox.enqueue("course_overviews", [str(course)])  # the author publishes again meanwhile
            return super().insert(batch, settings)

    report = delivery.drain("course_overviews", PublishingDuringTheDump(embedded_clickhouse))

    versions = embedded_clickhouse.rows(
        "SELECT uniqExact(version) FROM event_sink.course_overviews WHERE course_key = {c:String}", {"c": str(course)}
    )
    assert versions == [(1,)]
    waiting = OutboxEntry.objects.filter(sink="course_overviews")
    assert waiting.count() == 1 and waiting.get().attempts == 0  # its try given back: it was never sent
    assert report.next_run_in == pytest.approx(30, abs=5)


def test_a_drain_past_its_interval_leaves_a_storms_new_publications_to_the_next_drain(
    embedded_clickhouse, settings, monkeypatch
):
    """
    A dump longer than the interval, and a full batch of new publications of the same course meanwhile: they
    are due at once, but for the next drain; this one stops instead of claiming and releasing them in a loop.
    """
    from xmodule.modulestore.course_builder import create_course

    settings.ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS = 0
    course = create_course("StormZ", "S1", "2026", blocks=5)
    for _ in range(10):  # a full batch: the drain claims again after it
        outbox.enqueue("course_overviews", [str(course)])

    class ManyPublicationsDuringTheDump(CountingTransport):
        def insert(self, batch, settings=None):
            if self.inserts == 0:
                for _ in range(12):
                    outbox.enqueue("course_overviews", [str(course)])
            return super().insert(batch, settings)

    claims = []
    claim = outbox.Queue.claim
    monkeypatch.setattr(outbox.Queue, "claim", lambda queue, limit: claims.append(limit) or claim(queue, limit))

    report = delivery.drain("course_overviews", ManyPublicationsDuringTheDump(embedded_clickhouse), time_budget=3)

    assert len(claims) == 2  # the first publications; then the storm's, left for the next drain
    assert OutboxEntry.objects.filter(sink="course_overviews", attempts=0).count() == 12
    assert report.next_run_in == 0


def test_a_paused_sink_switched_off_is_no_longer_paused_once_its_entries_are_dropped(embedded_clickhouse, settings):
    """An operator switches off the sink a configuration error paused: its pause must not stay critical for ever."""
    from aspects_sink import health
    from aspects_sink.models import SinkHealth

    health.record_failure("external_id", SinkHealth.CONFIGURATION, "Code: 60. Table x does not exist", pause=True)
    SinkHealth.objects.filter(sink="external_id").update(last_error_at=timezone.now() - datetime.timedelta(hours=1))
    outbox.enqueue("external_id", ["1"])
    settings.EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED = False

    delivery.drain("external_id", embedded_clickhouse)

    assert not OutboxEntry.objects.filter(sink="external_id").exists()
    assert SinkHealth.objects.get(sink="external_id").paused_since is None


def test_a_drain_ends_without_counting_its_queue(embedded_clickhouse, pii):
    """
    When the next drain is due is one read of the claim index: a COUNT by state at the end of every drain (every
    two seconds on the xAPI route) would scan a backlog of millions of entries each time.
    """
    users = [create_user(f"count{i}", f"count{i}@example.com") for i in range(3)]
    OutboxEntry.objects.filter(object_id=str(users[0].id)).update(
        available_at=timezone.now() + datetime.timedelta(hours=1)
    )  # one waits: the drain must say when
    with CaptureQueriesContext(connection) as queries:
        report = delivery.drain("user_profile", embedded_clickhouse)
    assert report.delivered and report.next_run_in > 3000
    assert not [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
