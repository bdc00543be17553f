"""Command-line options shared by the management commands: the ClickHouse connection overrides."""

from __future__ import annotations

from django.core.management.base import CommandError

from aspects_sink.connection import get_transport
from aspects_sink.transport import ClickHouseTransport, TransportError


def add_connection_arguments(parser) -> None:
    """--url, --username, --password, --database, --timeout_secs: override EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG."""
    group = parser.add_argument_group("ClickHouse connection (defaults: EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)")
    group.add_argument("--url", help="http(s)://host:port/ of ClickHouse, or chdb://<path>")
    group.add_argument("--username")
    group.add_argument("--password", help="prefer the setting: a password on the command line shows in `ps`")
    group.add_argument("--database")
    group.add_argument("--timeout_secs", type=float)


def transport_from_options(options: dict, **overrides) -> ClickHouseTransport:
    """The transport the options ask for, checked with one query so a bad URL or password fails fast."""
    values = {name: options.get(name) for name in ("url", "username", "password", "database", "timeout_secs")}
    values.update(overrides)
    transport = get_transport(**values)
    try:
        transport.ping()
    except TransportError as error:
        raise CommandError(str(error)) from error
    return transport
