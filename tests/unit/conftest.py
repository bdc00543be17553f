"""
Fixtures for in-process tests: the test LMS database (pytest-django) and an embedded ClickHouse
(chDB, through clickhouse-connect's ``chdb://`` URLs) holding the sinks' schema.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.fixture(scope="session")
def embedded_clickhouse_path(tmp_path_factory):
    """One embedded ClickHouse per test process: chDB allows a single data path per process."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def embedded_clickhouse(settings, embedded_clickhouse_path):
    """Point the plugin at the embedded ClickHouse, with a fresh database holding the schema."""
    from aspects_sink.connection import get_transport

    database = "event_sink"
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
        **settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
        "url": f"chdb://{embedded_clickhouse_path}",
        "database": database,
    }
    transport = get_transport()
    transport.command(f"DROP DATABASE IF EXISTS {database}")
    call_command("aspects_sink_schema", verbosity=0)
    transport._table_columns.clear()
    return transport


@pytest.fixture
def pii(settings):
    settings.ASPECTS_ENABLE_PII = True
