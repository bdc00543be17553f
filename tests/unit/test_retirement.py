"""
Retirement removes a user's personal data from every table that holds it, one DELETE per table per batch, and
converges: rows a batch read before the user was recorded are removed again without anyone acting.
"""

from __future__ import annotations

import io
import logging

import pytest
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from django.core.management import call_command
from django.core.management.base import CommandError
from opaque_keys.edx.keys import CourseKey
from openedx.core.djangoapps.user_api.accounts.views import AccountRetirementView, LMSAccountRetirementView

from aspects_sink import delivery, mutations, retirement
from aspects_sink.models import RetiredUser, VersionTick
from aspects_sink.sinks.base import Stamp
from aspects_sink.sinks.registry import get_sink
from aspects_sink.transport import ColumnBatch

pytestmark = pytest.mark.django_db(transaction=True)
COURSE = CourseKey.from_string("course-v1:edX+R+1")
SINKS = ("user_profile", "external_id", "course_enrollment", "profile_city", "user_retirement")


@pytest.fixture
def site_sink(settings, embedded_clickhouse):
    """The README's example of a site's sink, whose ``city`` column is not marked personal, and its table."""
    settings.ASPECTS_SINK_EXTRA_SINKS = ["tests.live.example_sinks.ProfileCitySink"]
    call_command("aspects_sink_schema", verbosity=0)


def drain_all():
    from aspects_sink.sinks.registry import all_sinks

    for _ in range(3):  # a racing batch queues a retirement again: drain until nothing is left
        for name in SINKS:
            if name in all_sinks():
                delivery.drain(name)


def enrolled(username: str):
    user = create_user(username, f"{username}@example.com", name=username.title(), city="Lyon")
    CourseEnrollment.enroll(user, COURSE)
    return user


def personal_rows(clickhouse, user_id: int) -> dict:
    """Every physical row (no FINAL) of the user holding personal data, per table."""
    return {
        "user_profile": clickhouse.rows(
            f"SELECT name, username, email FROM event_sink.user_profile WHERE user_id = {user_id}"
        ),
        "external_id": clickhouse.rows(f"SELECT username FROM event_sink.external_id WHERE user_id = {user_id}"),
        "course_enrollment": clickhouse.rows(
            f"SELECT username FROM event_sink.course_enrollment WHERE user_id = {user_id} AND username != ''"
        ),
        "profile_city": clickhouse.rows(
            f"SELECT city FROM event_sink.profile_city WHERE user_id = {user_id} AND city != ''"
        ),
    }


NOTHING = {"user_profile": [], "external_id": [], "course_enrollment": [], "profile_city": []}


def test_upstream_steps_leave_no_personal_value_and_need_only_delete(embedded_clickhouse, pii, site_sink, caplog):
    keep, gone = enrolled("keep"), enrolled("gone")
    drain_all()
    LMSAccountRetirementView().post("gone")
    with caplog.at_level(logging.INFO):
        drain_all()
        AccountRetirementView().post("gone")  # profile saves with the real username, then the rename
        drain_all()
    assert personal_rows(embedded_clickhouse, gone.id) == NOTHING
    assert personal_rows(embedded_clickhouse, keep.id)["course_enrollment"] == [("keep",)]
    assert embedded_clickhouse.rows(
        f"SELECT count() FROM event_sink.course_enrollment FINAL WHERE user_id = {gone.id}"
    ) == [(1,)]  # the enrollment stays, without its username
    assert RetiredUser.objects.get(user_id=gone.id).scrubbed_at is not None
    mutations_run = embedded_clickhouse.rows("SELECT command FROM system.mutations WHERE database = 'event_sink'")
    assert mutations_run and all("UPDATE" not in command for (command,) in mutations_run)


def test_one_delete_per_table_for_a_whole_batch_and_on_cluster(settings):
    settings.ASPECTS_SINK_CLUSTER = {"name": "analytics", "shards": 2}
    statements = [w for w in get_sink("user_retirement").writes_for(["3", "1", "2"], Stamp(1)) if hasattr(w, "sql")]
    assert len(statements) == 3  # user_profile, external_id, course_enrollment (whose rows are written back)
    assert all(" ON CLUSTER `analytics` DELETE WHERE" in statement.sql for statement in statements)
    assert all("_local`" in statement.sql for statement in statements)
    assert all(statement.parameters["user_ids"] == [1, 2, 3] for statement in statements)


def test_names_that_are_not_sinks_are_ignored_not_fatal(settings):
    settings.EVENT_SINK_CLICKHOUSE_PII_MODELS = ["user_profile", "auth_user"]  # Tutor's old default list
    statements = [w for w in get_sink("user_retirement").writes_for(["1"], Stamp(1)) if hasattr(w, "sql")]
    assert {statement.sql.split()[2] for statement in statements} == {
        "`event_sink`.`user_profile`",
        "`event_sink`.`external_id`",
        "`event_sink`.`course_enrollment`",
    }


def test_a_batch_read_before_the_record_and_inserted_after_the_mutation_is_removed(embedded_clickhouse, pii, site_sink):
    user = enrolled("late")
    drain_all()
    stale = {name: get_sink(name).writes_for([user.id], Stamp(VersionTick.allocate())) for name in SINKS[:4]}
    LMSAccountRetirementView().post("late")
    drain_all()
    assert personal_rows(embedded_clickhouse, user.id) == NOTHING
    for name, writes in stale.items():  # the slow drains' INSERTs land now, then they look at what they wrote
        for batch in writes:
            if isinstance(batch, ColumnBatch):
                embedded_clickhouse.insert(batch)
        retirement.after_write(get_sink(name), [user.id], writes)
    assert personal_rows(embedded_clickhouse, user.id) != NOTHING
    assert RetiredUser.objects.get(user_id=user.id).scrubbed_at is None
    drain_all()  # nobody acts: the retirement queued again removes them
    assert personal_rows(embedded_clickhouse, user.id) == NOTHING


def test_a_re_dump_keeps_retired_users_out_and_their_usernames_blank(embedded_clickhouse, pii, site_sink):
    user = enrolled("redump")
    LMSAccountRetirementView().post("redump")  # the username is still the real one
    drain_all()
    call_command("dump_data_to_clickhouse", "--sleep_time", "0", stdout=io.StringIO())
    assert personal_rows(embedded_clickhouse, user.id) == NOTHING


def test_a_deleted_user_or_profile_leaves_no_row(embedded_clickhouse, pii, site_sink):
    user, other = enrolled("deleted"), enrolled("noprofile")
    drain_all()
    UserProfile.objects.filter(user=other).delete()
    user_id = user.id
    user.delete()
    drain_all()
    assert embedded_clickhouse.rows(
        f"SELECT count() FROM event_sink.user_profile WHERE user_id IN ({user_id}, {other.id})"
    ) == [(0,)]
    assert personal_rows(embedded_clickhouse, user_id) == NOTHING
    assert RetiredUser.objects.filter(user_id=user_id).exists()


def test_pii_off_sends_no_personal_value_live_or_in_a_backfill(embedded_clickhouse, site_sink):
    user = enrolled("anonymous")
    drain_all()
    call_command("dump_data_to_clickhouse", "--sleep_time", "0", stdout=io.StringIO())
    assert embedded_clickhouse.rows("SELECT count() FROM event_sink.user_profile") == [(0,)]
    assert embedded_clickhouse.rows("SELECT count() FROM event_sink.external_id") == [(0,)]  # as Tutor's Aspects
    assert personal_rows(embedded_clickhouse, user.id) == NOTHING  # usernames, and a site sink's city, are empty


def test_a_failing_mutation_is_reported_never_taken_as_done(embedded_clickhouse, settings):
    settings.ASPECTS_SINK_RETIREMENT_MUTATION_TIMEOUT_SECONDS = 30
    embedded_clickhouse.command("INSERT INTO event_sink.course_enrollment (user_id, course_key) VALUES (7, 'c')")
    with pytest.raises(mutations.MutationNotDone, match=r"event_sink\.course_enrollment: mutation .* fails: .*refused"):
        mutations.run(
            embedded_clickhouse,
            "ALTER TABLE event_sink.course_enrollment DELETE WHERE throwIf(user_id = 7, 'refused')",
            {},
            {},
            "event_sink.course_enrollment",
        )
    embedded_clickhouse.command("KILL MUTATION WHERE database = 'event_sink' AND table = 'course_enrollment'")


def test_the_check_finds_a_planted_row_and_repair_removes_it(embedded_clickhouse, pii, site_sink):
    user = enrolled("planted")
    LMSAccountRetirementView().post("planted")
    drain_all()
    call_command("aspects_sink_retirement_check", stdout=io.StringIO())  # clean
    embedded_clickhouse.command(
        f"INSERT INTO event_sink.user_profile (id, user_id, name, username, email) "
        f"VALUES (999, {user.id}, 'Planted', 'planted', 'planted@example.com')"
    )
    with pytest.raises(CommandError, match=rf"event_sink`.`user_profile`: {user.id}"):
        call_command("aspects_sink_retirement_check", stdout=io.StringIO())
    output = io.StringIO()
    call_command("aspects_sink_retirement_check", "--repair", stdout=output)
    assert "repaired: 1 users" in output.getvalue() and "No personal data of the 1 retired users" in output.getvalue()
    assert personal_rows(embedded_clickhouse, user.id) == NOTHING


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


def test_a_mutation_still_running_when_its_statement_timed_out_is_clickhouse_away_not_a_bad_object():
    """
    The ALTER queued its mutation, then the client gave up waiting (a long ``mutations_sync`` DELETE, an ON
    CLUSTER statement waiting for a replica): ClickHouse is slow, the users are not at fault, so the retirement is
    given back and tried again, never parked.
    """
    from aspects_sink.transport import ClickHouseUnavailable

    class TimedOut:
        """ClickHouse as it answers then: the ALTER times out; system.mutations shows it running, not failing."""

        def rows(self, sql, parameters=None):
            return [("2026-12-02 04:00:00",)] if "now()" in sql else [("mutation_7.txt", "")]

        def command(self, sql, parameters=None, settings=None):
            raise ClickHouseUnavailable("Read timed out. (read timeout=30)")

    with pytest.raises(ClickHouseUnavailable):
        mutations.run(TimedOut(), "ALTER TABLE t DELETE WHERE 1", {}, {}, "event_sink.course_enrollment")


def test_on_a_cluster_a_retirement_waits_for_its_mutations_on_every_replica(settings):
    """
    An ``ON CLUSTER`` mutation runs on every replica (each shard's ``_local`` table when sharded): the retirement is
    done when none of them shows it unfinished, not when the replica the client talks to is done.
    """
    from aspects_sink.sinks import schema

    settings.ASPECTS_SINK_CLUSTER = {"name": "analytics", "shards": 2}
    asked = []

    class Cluster:
        """ClickHouse on a cluster whose mutations are all done."""

        def rows(self, sql, parameters=None):
            asked.append(sql)
            return [("2026-12-02 04:00:00",)] if "now()" in sql else []

        def command(self, sql, parameters=None, settings=None):
            pass

    writes = get_sink("user_retirement").writes_for(["42"], Stamp(1))
    statements = [write for write in writes if hasattr(write, "sql")]
    assert {statement.mutations_log for statement in statements} == {schema.mutations_log()}
    statement = statements[0]
    mutations.run(Cluster(), statement.sql, {}, {}, statement.mutates, mutations_log=statement.mutations_log)
    assert any("FROM clusterAllReplicas(`analytics`, system.mutations)" in sql for sql in asked), asked


def test_without_the_remote_grant_a_cluster_retirement_waits_on_the_replica_it_talks_to(settings, caplog):
    """
    Reading every replica's mutations needs ClickHouse's REMOTE grant; without it the wait reads the replica the
    client talks to (as before) and says so, instead of failing the retirement and sending its mutation again.
    """
    from aspects_sink.sinks import schema
    from aspects_sink.transport import ClickHouseMisconfigured

    settings.ASPECTS_SINK_CLUSTER = {"name": "analytics", "shards": 2}
    commands = []

    class NoRemoteGrant:
        def rows(self, sql, parameters=None):
            if "clusterAllReplicas" in sql:
                raise ClickHouseMisconfigured("Code: 497. Not enough privileges: REMOTE ON *.* (ACCESS_DENIED)")
            return [("2026-12-02 04:00:00",)] if "now()" in sql else []

        def command(self, sql, parameters=None, settings=None):
            commands.append(sql)

    with caplog.at_level("WARNING", logger="aspects_sink"):
        mutations.run(
            NoRemoteGrant(),
            "ALTER TABLE t DELETE WHERE 1",
            {},
            {},
            "event_sink.t",
            mutations_log=schema.mutations_log(),
        )
    assert len(commands) == 1
    assert any("REMOTE" in record.getMessage() for record in caplog.records)
