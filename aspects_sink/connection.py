"""The process's ClickHouse transport, built from ``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG``."""

from __future__ import annotations

from functools import lru_cache

from aspects_sink.conf import aspects_settings
from aspects_sink.transport import ClickHouseTransport, ConnectionConfig


def connection_config(**overrides) -> ConnectionConfig:
    """The configured connection, with any non-None overrides (management commands' --url etc.)."""
    return ConnectionConfig.from_mapping(aspects_settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **overrides)


@lru_cache(maxsize=4)
def _transport(config: ConnectionConfig) -> ClickHouseTransport:
    return ClickHouseTransport(config)


def get_transport(**overrides) -> ClickHouseTransport:
    """One transport per distinct configuration, so clients and table metadata are reused."""
    return _transport(connection_config(**overrides))
