"""
The status command, the metrics endpoint and the admin's status page show one set of figures, read from the LMS
database and ClickHouse: pending work and its age, retries, dead letters by reason, the drains' health, pauses,
ClickHouse's version, unfinished retirement mutations and the periodic sweep. Levels follow the settings.
"""

from __future__ import annotations

import datetime
import io
import json

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from aspects_sink import health, outbox, status
from aspects_sink.models import OutboxEntry, SinkHealth, XapiStatement

EXPECTED_QUEUES = {"course_overviews", "user_profile", "external_id", "course_enrollment", "user_retirement"}


def run_status(*arguments: str) -> tuple[int, str]:
    output = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("aspects_sink_status", *arguments, stdout=output)
    return int(exit_.value.code), output.getvalue()


def age(minutes: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(minutes=minutes)


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    """The endpoint's samples: name → {labels as sorted tuple: value}."""
    response = client.get("/aspects_sink/metrics", **headers)
    assert response.status_code == 200, response.content
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def troubled(operator_clickhouse):
    """A plugin with a backlog, retries, dead letters of two kinds, a paused sink and a recent sweep."""
    OutboxEntry.objects.bulk_create(
        [
            OutboxEntry(sink="user_profile", object_id="1", created=age(40)),
            OutboxEntry(sink="user_profile", object_id="2", created=age(1), attempts=2),
            OutboxEntry(sink="course_enrollment", object_id="3", created=age(6)),
            OutboxEntry(sink="course_enrollment", object_id="4", state="dead", last_error="ClickHouseRejected: bad"),
            OutboxEntry(sink="course_enrollment", object_id="5", state="dead", last_error="SerializationError: x"),
            OutboxEntry(sink="course_enrollment", object_id="6", state="dead", last_error="SerializationError: y"),
        ]
    )
    XapiStatement.objects.create(
        event_id="e1", emission_time=timezone.now(), statement="{}", state="dead", last_error="ClickHouseRejected: z"
    )
    health.record_delivery("user_profile", rows=120, inserts=3)
    health.record_failure(
        "external_id", SinkHealth.CONFIGURATION, "UNKNOWN_TABLE external_id at http://u:hunter2@ch:8123/", pause=True
    )
    status.record_sweep()
    return operator_clickhouse


def test_status_reports_every_queue_and_goes_critical_with_the_right_findings(troubled):
    code, output = run_status("--json")
    found = json.loads(output)
    assert code == 2 and found["level"] == "critical" and found["exit_code"] == 2
    queues = {queue["name"]: queue for queue in found["queues"]}
    assert EXPECTED_QUEUES | {"xapi_statements"} <= set(queues)

    profile = queues["user_profile"]
    assert profile["pending"] == 2 and profile["retrying"] == 1
    assert 40 * 60 <= profile["oldest_pending_age_seconds"] < 41 * 60
    assert profile["level"] == "critical"  # older than 30 minutes
    assert profile["rows_delivered"] == 120 and profile["inserts"] == 3 and profile["last_success_at"]

    enrollment = queues["course_enrollment"]
    assert enrollment["level"] == "critical" or enrollment["level"] == "warning"
    assert enrollment["dead_letters_by_reason"] == {"ClickHouseRejected": 1, "SerializationError": 2}
    assert queues["xapi_statements"]["dead_letters_by_reason"] == {"ClickHouseRejected": 1}

    paused = queues["external_id"]
    assert paused["paused"] and paused["level"] == "critical"
    assert paused["last_error"]["class"] == "configuration"
    assert "hunter2" not in output  # secrets never shown

    assert found["clickhouse"]["reachable"] and found["clickhouse"]["version"]
    assert found["mutations"] == {"pending": 0, "failed": 0, "unfinished": []}
    assert found["sweep"]["age_seconds"] < 60

    code, text = run_status()
    assert code == 2 and "CRITICAL" in text and "PAUSED" in text and "external_id" in text


def test_levels_follow_the_thresholds_in_settings(operator_clickhouse, settings):
    status.record_sweep()
    assert run_status()[0] == 0
    OutboxEntry.objects.create(sink="user_profile", object_id="1", created=age(10))
    assert run_status()[0] == 1  # older than the 5-minute warning
    settings.ASPECTS_SINK_STATUS_THRESHOLDS = {"oldest_pending_warning_seconds": 3600}
    assert run_status()[0] == 0  # the other thresholds keep their defaults
    SinkHealth.objects.filter(sink=status.SWEEP_RECORD).update(last_success_at=age(11))
    assert run_status()[0] == 1  # Celery beat has not swept for 10 minutes


def test_failed_and_pending_retirement_mutations_are_reported(operator_clickhouse):
    status.record_sweep()
    # A mutation that cannot succeed: the value does not fit the column, so ClickHouse keeps failing it.
    operator_clickhouse.command("INSERT INTO user_profile (id, user_id, year_of_birth, version) VALUES (1, 1, 'x', 1)")
    try:
        with pytest.raises(DatabaseError):  # the endpoint runs mutations synchronously: the ALTER reports the failure
            operator_clickhouse.command("ALTER TABLE user_profile UPDATE user_id = toInt32(year_of_birth) WHERE id = 1")
        found = status.collect()
        assert found.mutations_failed == 1 and found.level == status.Level.CRITICAL
        assert any("user_profile" in finding.subject and "failed" in finding.message for finding in found.findings)
        assert run_status("--json")[1].count('"failed": true') == 1
    finally:  # a failed mutation blocks later ones on the table: the other tests need it gone
        operator_clickhouse.command("KILL MUTATION WHERE table = 'user_profile' AND latest_fail_reason != ''")
    assert status.collect().mutations == ()


def test_metrics_show_the_status_figures_to_staff_and_token_holders_only(troubled, client, settings):
    assert client.get("/aspects_sink/metrics").status_code == 403
    settings.ASPECTS_SINK_METRICS_TOKEN = "scrape-secret\n"  # as read from a secret's file
    assert client.get("/aspects_sink/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    samples = scrape(client, HTTP_AUTHORIZATION="Bearer scrape-secret")
    settings.ASPECTS_SINK_METRICS_TOKEN = " \n"  # blank: no token at all, not one anybody may present
    assert client.get("/aspects_sink/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403

    client.force_login(User.objects.create_user("ops", is_staff=True))
    assert scrape(client).keys() == samples.keys()

    assert samples["aspects_sink_pending_entries"][(("sink", "user_profile"),)] == 2
    assert samples["aspects_sink_retrying_entries"][(("sink", "user_profile"),)] == 1
    assert samples["aspects_sink_oldest_pending_age_seconds"][(("sink", "user_profile"),)] >= 40 * 60
    assert samples["aspects_sink_dead_letters"][(("reason", "SerializationError"), ("sink", "course_enrollment"))] == 2
    assert samples["aspects_sink_delivered_rows_total"][(("sink", "user_profile"),)] == 120
    assert samples["aspects_sink_inserts_total"][(("sink", "user_profile"),)] == 3
    assert samples["aspects_sink_last_success_timestamp_seconds"][(("sink", "user_profile"),)] > 0
    assert samples["aspects_sink_paused"][(("sink", "external_id"),)] == 1
    assert samples["aspects_sink_paused"][(("sink", "user_profile"),)] == 0
    assert samples["aspects_sink_clickhouse_up"][()] == 1
    assert samples["aspects_sink_sweep_last_run_timestamp_seconds"][()] > 0
    assert samples["aspects_sink_status_level"][()] == 2
    assert list(samples["aspects_sink_clickhouse_info"]) == [(("version", status.collect().clickhouse.version),)]


def test_replaying_from_the_status_figures_moves_dead_letters_back(troubled):
    assert outbox.replay_dead_letters(sink_name="course_enrollment") == 3
    found = {queue.name: queue for queue in status.collect().queues}
    assert found["course_enrollment"].dead_letters == 0 and found["course_enrollment"].pending == 4


def test_changes_the_outbox_could_not_record_are_critical_and_counted(operator_clickhouse, client):
    """Such changes reach ClickHouse only with the object's next change or a backfill: nobody may miss them."""
    status.record_sweep()
    health.record_outbox_failure("user_profile", 3, "OperationalError: (1205, 'Lock wait timeout exceeded')")

    found = status.collect()
    assert found.level == status.Level.CRITICAL
    (finding,) = [finding for finding in found.findings if finding.subject == "user_profile"]
    assert "3 changes could not be recorded in the outbox" in finding.message and "backfill" in finding.message
    assert {queue.name: queue.unrecorded_changes for queue in found.queues}["user_profile"] == 3
    client.force_login(User.objects.create_user("ops", is_staff=True))
    assert scrape(client)["aspects_sink_unrecorded_changes_total"][(("sink", "user_profile"),)] == 3

    # A drain's error and a delivery afterwards: the changes are no less lost for it.
    health.record_failure("user_profile", SinkHealth.UNAVAILABLE, "ClickHouseUnavailable: connection refused")
    health.record_delivery("user_profile", rows=5, inserts=1)
    found = status.collect()
    assert found.level == status.Level.CRITICAL
    assert [finding for finding in found.findings if "could not be recorded" in finding.message]


def test_retirement_mutations_that_cannot_be_read_are_a_finding(operator_clickhouse, settings):
    """ClickHouse answers, but not about its mutations (here, a cluster it does not know): unknown is no 'OK'."""
    status.record_sweep()
    settings.ASPECTS_SINK_CLUSTER = {"name": "no_such_cluster"}

    found = status.collect()

    assert found.mutations is None and found.level == status.Level.WARNING
    (finding,) = found.findings
    assert finding.subject == "clickhouse" and "could not read its mutations" in finding.message
    output = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("aspects_sink_status", stdout=output)
    assert "Retirement mutations: unknown (could not be read: see the findings)" in output.getvalue()


def test_retrying_counts_entries_that_failed_not_those_on_their_first_try(operator_clickhouse):
    """A batch in flight for the first time is no retry; entries given back while ClickHouse is away are."""
    from aspects_sink.transport import ClickHouseUnavailable

    for user_id in ("1", "2"):
        OutboxEntry.objects.create(sink="user_profile", object_id=user_id)
    queue = outbox.queue("user_profile")

    def retrying() -> int:
        return {found.name: found.retrying for found in status.collect().queues}["user_profile"]

    claimed = queue.claim(10)
    assert retrying() == 0
    queue.give_back(claimed, ClickHouseUnavailable("Connection refused"), waits=1)
    assert retrying() == 2


def test_a_status_that_cannot_be_read_is_unknown_to_probes(operator_clickhouse):
    """The LMS database failing under the status (here, a table of the plugin's gone): Nagios' UNKNOWN, 3."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE aspects_sink_sinkhealth RENAME TO aspects_sink_sinkhealth_away")
    try:
        code, output = run_status()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE aspects_sink_sinkhealth_away RENAME TO aspects_sink_sinkhealth")
    assert code == 3 and output.startswith("UNKNOWN: the status could not be read: ") and "sinkhealth" in output


def test_entries_of_a_sink_no_longer_installed_do_not_stop_the_sweep(operator_clickhouse, seeder, monkeypatch):
    """
    A site sink removed with entries still pending (or replayed since): the sweep drains every other sink, says
    which name it cannot drain, and fails, so cron shows it; the periodic task skips it and goes on.
    """
    from django.core.management.base import CommandError

    from aspects_sink import delivery, scheduling

    seeder.users(3)
    OutboxEntry.objects.bulk_create(
        OutboxEntry(sink="user_profile", object_id=str(user.id)) for user in User.objects.all()
    )
    OutboxEntry.objects.create(sink="aaa_removed", object_id="1")  # sorted before every sink that exists
    # The periodic task: no traceback, the others woken (recorded here: the cache's schedule is every process's).
    woken = []
    monkeypatch.setattr(scheduling, "wake_from_sweep", lambda sink_name, overdue: woken.append(sink_name) or True)
    assert delivery.sweep() == woken == ["user_profile"]

    output = io.StringIO()
    with pytest.raises(CommandError, match=r"aaa_removed: no such sink"):
        call_command("aspects_sink_sweep", "--drain", stdout=output)
    assert not OutboxEntry.objects.filter(sink="user_profile").exists(), output.getvalue()  # drained all the same


def test_a_sweep_that_drained_nothing_of_what_it_found_fails(operator_clickhouse):
    """``--drain`` run because the broker is down: entries still waiting (backoff, a paused sink) are a failure."""
    from django.core.management.base import CommandError

    OutboxEntry.objects.create(  # backing off after an outage
        sink="user_profile", object_id="1", available_at=timezone.now() + datetime.timedelta(minutes=5)
    )
    with pytest.raises(CommandError, match=r"user_profile.*not due until"):
        call_command("aspects_sink_sweep", "--drain", stdout=io.StringIO())


def test_a_sweep_that_drops_the_entries_of_a_switched_off_sink_succeeds(operator_clickhouse, settings):
    """A switched-off sink's entries are dropped by its drain (as the live path does): nothing was left unsent."""
    settings.EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = False
    OutboxEntry.objects.create(sink="course_enrollment", object_id="1")
    call_command("aspects_sink_sweep", "--drain", stdout=io.StringIO())
    assert not OutboxEntry.objects.filter(sink="course_enrollment").exists()


def test_a_sweep_that_could_not_wake_a_drain_fails(operator_clickhouse, monkeypatch):
    """Run from cron, the sweep's exit code is all anyone reads: a drain it could not schedule is a failure."""
    from django.core.management.base import CommandError

    from aspects_sink import scheduling

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(scheduling, "send_task", broker_down)
    OutboxEntry.objects.create(sink="user_profile", object_id="1")

    try:
        with pytest.raises(CommandError, match=r"^could not schedule the drains of user_profile: is the broker up\?"):
            call_command("aspects_sink_sweep", stdout=io.StringIO())
    finally:  # the outage it recorded would hold the wake-ups of the tests after it
        scheduling.cache.delete(scheduling._BROKER_DOWN_KEY)
