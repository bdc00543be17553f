"""
Fixtures for the xAPI route: one devstack (LMS processes, a real Celery worker, the devstack ClickHouse
endpoint) for the whole directory, and in-process tests pointed at the same ClickHouse endpoint, each with
a raw table of its own.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from processes import CLICKHOUSE_PASSWORD, CLICKHOUSE_USER, Devstack

from tests.support.xapi import DEVSTACK_SETTINGS


@pytest.fixture(scope="session")
def devstack(tmp_path_factory):
    """A started devstack with one worker (and the beat sweep), shared by every test here."""
    devstack = Devstack(tmp_path_factory.mktemp("xapi-devstack"), settings=DEVSTACK_SETTINGS)
    devstack.start()
    try:
        devstack.start_worker(beat=True)
        yield devstack
    finally:
        devstack.stop()


@pytest.fixture
def devstack_clickhouse(devstack, settings, db):
    """
    In-process tests: the plugin writes to the devstack's ClickHouse, into a raw table made for the test
    (created by the schema command), so tests can alter it without disturbing each other.
    """
    from aspects_sink.connection import get_transport

    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
        **settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
        "url": devstack.clickhouse.url,
        "username": CLICKHOUSE_USER,
        "password": CLICKHOUSE_PASSWORD,
        "database": "event_sink",
    }
    settings.ASPECTS_SINK_XAPI_TABLE = f"xapi_events_{uuid.uuid4().hex[:10]}"
    call_command("aspects_sink_schema", verbosity=0)
    return get_transport()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server in its own process, IAM authentication on (see tests.support.object_storage)."""
    from tests.support.object_storage import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_environment(s3_server, monkeypatch):
    """The S3 server's address and credentials in boto3's usual variables, as a pod would have them."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    return s3_server
