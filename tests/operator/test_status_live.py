"""
The operator's view of a running devstack (LMS, a Celery worker with beat, ClickHouse as processes): an outage
turns the status command and the metrics critical, with the age of the oldest waiting change; once ClickHouse is
back and the backlog drained, both return to ok. A table renamed away pauses its sink by configuration.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import scenarios

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini


@pytest.fixture
def devstack(operator_devstack):
    return operator_devstack


def status(devstack) -> tuple[int, dict]:
    result = devstack.manage("lms", "aspects_sink_status", "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def metrics(devstack) -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(
        f"{devstack.lms_url}/aspects_sink/metrics", headers={"Authorization": f"Bearer {devstack.metrics_token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def queue(found: dict, name: str) -> dict:
    return next(each for each in found["queues"] if each["name"] == name)


def wait_for_ok(devstack) -> dict:
    last = {}

    def ok():
        code, last["found"] = status(devstack)
        return last["found"] if code == 0 else None

    try:
        return devstack.wait_for(ok, timeout=120, interval=1, what="status ok")
    except TimeoutError as error:
        raise AssertionError(f"status never ok: {last.get('found', {}).get('findings')}") from error


@pytest.mark.slow
def test_an_outage_goes_critical_with_its_backlog_age_and_returns_to_ok(devstack):
    wait_for_ok(devstack)  # beat has swept, ClickHouse answers, nothing waits
    assert metrics(devstack)[("aspects_sink_status_level", ())] == 0

    devstack.clickhouse.stop()
    try:
        before = time.time()
        devstack.run_function("lms", scenarios.create_users, prefix="outage", count=5)
        after = time.time()
        devstack.wait_for(
            lambda: (queue(status(devstack)[1], "user_profile")["oldest_pending_age_seconds"] or 0) >= 2,
            timeout=60,
            what="a backlog older than the critical threshold",
        )
        asked = time.time()
        code, found = status(devstack)
        answered = time.time()
        assert code == 2 and found["level"] == "critical"
        assert not found["clickhouse"]["reachable"] and found["mutations"] is None
        profile = queue(found, "user_profile")
        assert profile["pending"] >= 5 and profile["level"] == "critical"
        # The oldest entry was made between `before` and `after`, and its age read between `asked` and `answered`.
        assert asked - after - 1 <= profile["oldest_pending_age_seconds"] <= answered - before + 1

        scraped_at = time.time()
        samples = metrics(devstack)
        assert samples[("aspects_sink_clickhouse_up", ())] == 0
        assert samples[("aspects_sink_status_level", ())] == 2
        assert samples[("aspects_sink_pending_entries", (("sink", "user_profile"),))] >= 5
        oldest = samples[("aspects_sink_oldest_pending_age_seconds", (("sink", "user_profile"),))]
        assert profile["oldest_pending_age_seconds"] <= oldest <= time.time() - before + 1
        assert oldest >= scraped_at - after - 1
    finally:
        devstack.clickhouse.restart()

    found = wait_for_ok(devstack)  # the worker retries, beat sweeps: the backlog drains
    assert queue(found, "user_profile")["pending"] == 0 and found["clickhouse"]["reachable"]
    samples = metrics(devstack)
    assert samples[("aspects_sink_clickhouse_up", ())] == 1
    assert samples[("aspects_sink_status_level", ())] == 0
    assert samples[("aspects_sink_pending_entries", (("sink", "user_profile"),))] == 0


def test_a_renamed_table_shows_its_sink_paused_by_configuration(devstack):
    ch = devstack.clickhouse_client()
    ch.command("RENAME TABLE external_id TO external_id_renamed")
    try:
        devstack.run_function("lms", scenarios.create_users, prefix="renamed", count=1)
        # The worker's drain meets the missing table and pauses the sink (ADR 0009).
        devstack.wait_for(
            lambda: queue(status(devstack)[1], "external_id")["paused"], timeout=90, interval=1, what="a paused sink"
        )
        code, found = status(devstack)
        paused = queue(found, "external_id")
        assert code == 2 and paused["paused"] and paused["level"] == "critical"
        assert paused["last_error"]["class"] == "configuration" and "external_id" in paused["last_error"]["message"]
        assert any(f["subject"] == "external_id" and "paused" in f["message"] for f in found["findings"])
        assert metrics(devstack)[("aspects_sink_paused", (("sink", "external_id"),))] == 1
        text = devstack.manage("lms", "aspects_sink_status", check=False).stdout
        assert "PAUSED" in text
    finally:
        ch.command("RENAME TABLE external_id_renamed TO external_id")
        devstack.run_function("lms", scenarios.forget_health, sink="external_id")
