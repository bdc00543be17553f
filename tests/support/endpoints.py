"""The plugin pointed at a test's own ClickHouse endpoint, for folders whose tests run in-process."""

from __future__ import annotations

from collections.abc import Iterable


def point_plugin_at(settings, client, endpoint, *, user: str, password: str, database: str, tables: Iterable[str]):
    """aspects-sink configured for ``endpoint`` (``database``), every one of ``tables`` emptied; PII on."""
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
        **settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
        "url": endpoint.url,
        "username": user,
        "password": password,
        "database": database,
    }
    settings.ASPECTS_ENABLE_PII = True
    for table in tables:
        client.command(f"TRUNCATE TABLE {database}.{table}")
