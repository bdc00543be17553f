"""
Nothing lost, nothing silent: ClickHouse or the broker going away delays data and never drops it;
an object ClickHouse rejects is parked with its reason while the rest go through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import scenarios
from tests.support.devstacks import make_devstack, outbox_counts, wait_until_drained
from tests.support.services import RedisServer

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini


def create_users(devstack, prefix: str, count: int, first: int = 0, city: str = "Lyon") -> None:
    devstack.run_function("lms", scenarios.create_users, prefix=prefix, count=count, first=first, city=city)


def profile_rows(devstack, prefix: str) -> tuple[int, int]:
    """(rows after FINAL, rows before FINAL) of the profiles whose username starts with ``prefix``."""
    ch = devstack.clickhouse_client()
    where = "WHERE startsWith(username, {p:String})"
    final = ch.command(f"SELECT count() FROM user_profile FINAL {where}", parameters={"p": prefix})
    raw = ch.command(f"SELECT count() FROM user_profile {where}", parameters={"p": prefix})
    return final, raw


@pytest.fixture
def devstack(tmp_path_factory):
    devstack = make_devstack(tmp_path_factory, "outage")
    devstack.start_worker(beat=True)
    yield devstack
    devstack.stop()


def test_clickhouse_outage_delays_changes_and_loses_none(devstack):
    devstack.clickhouse.stop()
    create_users(devstack, "chdown", 1000)  # the LMS keeps working while ClickHouse is down
    assert outbox_counts(devstack)["pending"] >= 1000
    devstack.clickhouse.restart()
    wait_until_drained(devstack)
    assert profile_rows(devstack, "chdown") == (1000, 1000)  # all arrived, none twice
    assert outbox_counts(devstack)["dead"] == 0


def test_broker_outage_delays_changes_and_loses_none(tmp_path_factory):
    redis = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    redis.start()
    devstack = make_devstack(tmp_path_factory, "brokerdown", broker_url=redis.url)
    try:
        devstack.start_worker(beat=True)
        redis.stop()
        create_users(devstack, "mqdown", 1000)  # wake-ups fail; the entries wait in the outbox
        assert outbox_counts(devstack)["pending"] >= 1000
        redis.start()  # same port, nothing persisted: queued tasks are gone too
        wait_until_drained(devstack, timeout=120)  # the worker reconnects; beat's sweep wakes the drains
        assert profile_rows(devstack, "mqdown") == (1000, 1000)
    finally:
        devstack.stop()
        redis.stop()


def test_rejected_object_is_parked_with_its_reason_while_the_rest_go_through(tmp_path_factory):
    devstack = make_devstack(
        tmp_path_factory,
        "rejects",
        settings={"ASPECTS_SINK_EXTRA_SINKS": ["example_sinks.ProfileCitySink"]},
        extra_pythonpath=(Path(__file__).parent,),
    )
    try:
        ch = devstack.clickhouse_client()
        ch.command("ALTER TABLE profile_city ADD CONSTRAINT no_atlantis CHECK city != 'Atlantis'")
        devstack.start_worker()
        create_users(devstack, "fine", 20)
        create_users(devstack, "lost", 1, city="Atlantis")
        create_users(devstack, "fine", 20, first=20)
        devstack.wait_for(
            lambda: outbox_counts(devstack) == {"pending": 0, "dead": 1}, timeout=90, what="one dead letter"
        )
        assert ch.command("SELECT count() FROM profile_city FINAL") == 40
        # the rejected object's other sinks were not held back
        assert profile_rows(devstack, "lost") == (1, 1)

        listing = devstack.manage("lms", "aspects_sink_dead_letters").stdout
        assert "profile_city" in listing
        assert "VIOLATED_CONSTRAINT" in listing or "Constraint" in listing

        devstack.run_function("lms", scenarios.move_learner, username="lost0", city="Paris")
        assert "1 dead letters queued again" in devstack.manage("lms", "aspects_sink_dead_letters", "--replay").stdout
        wait_until_drained(devstack)
        assert ch.command("SELECT count() FROM profile_city FINAL WHERE city = 'Paris'") == 1
    finally:
        devstack.stop()
