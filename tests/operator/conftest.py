"""
Fixtures for the operator's tools: a ClickHouse endpoint of the folder's own (the devstack's chDB server) holding
aspects-sink's schema, the plugin pointed at it, and seeded LMS objects.
"""

from __future__ import annotations

import io

import clickhouse_connect
import pytest
from clickhouse_endpoint import ClickHouseEndpoint
from devstack_tools.seeding import Seeder
from django.core.management import call_command

from tests.support.devstacks import make_devstack
from tests.support.endpoints import point_plugin_at

USER = "operator"
PASSWORD = "operator-secret"
DATABASE = "event_sink_operator"
METRICS_TOKEN = "live-scrape-token"
# Critical from 2 s, so the live tests see a backlog's own level without waiting long.
LIVE_THRESHOLDS = {
    "oldest_pending_warning_seconds": 1,
    "oldest_pending_critical_seconds": 2,
    "sweep_warning_seconds": 60,
}
TABLES = ("course_overviews", "course_blocks", "user_profile", "external_id", "course_enrollment")


@pytest.fixture(scope="session")
def clickhouse_endpoint(tmp_path_factory):
    with ClickHouseEndpoint(tmp_path_factory.mktemp("clickhouse"), user=USER, password=PASSWORD) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def clickhouse_client(clickhouse_endpoint):
    """A client of the test's own, and aspects-sink's schema created once (the command is idempotent)."""
    connection = ("--url", clickhouse_endpoint.url, "--username", USER, "--password", PASSWORD)
    call_command("aspects_sink_schema", *connection, "--database", DATABASE, stdout=io.StringIO())
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=clickhouse_endpoint.port, username=USER, password=PASSWORD, database=DATABASE
    )
    yield client
    client.close()


@pytest.fixture
def operator_clickhouse(clickhouse_endpoint, clickhouse_client, settings, db):
    """aspects-sink configured for the endpoint, every table emptied; PII on."""
    point_plugin_at(
        settings, clickhouse_client, clickhouse_endpoint, user=USER, password=PASSWORD, database=DATABASE, tables=TABLES
    )
    return clickhouse_client


@pytest.fixture
def seeder(db):
    """The stand-in platform's bulk seeding (users with profiles, external ids, courses, enrollments)."""
    return Seeder(seed=12, batch_size=5000, progress=lambda line: None)


@pytest.fixture(scope="session")
def operator_devstack(tmp_path_factory):
    """
    A running devstack for the folder's live tests: LMS served over HTTP (``lms_url``), a worker with beat, and
    ClickHouse. Each test leaves it as it found it: nothing pending, ClickHouse up, no recorded pause.
    """
    devstack = make_devstack(
        tmp_path_factory,
        "operator",
        settings={"ASPECTS_SINK_STATUS_THRESHOLDS": LIVE_THRESHOLDS, "ASPECTS_SINK_METRICS_TOKEN": METRICS_TOKEN},
    )
    try:
        devstack.start_worker(beat=True)
        devstack.lms_url = devstack.start_web("lms")
        devstack.metrics_token = METRICS_TOKEN
        yield devstack
    finally:
        devstack.stop()
