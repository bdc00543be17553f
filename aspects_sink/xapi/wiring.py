"""What ``AspectsSinkConfig.ready()`` does for xAPI: register the statements' queue and table, rewire ERB."""

from __future__ import annotations

from aspects_sink import outbox, schema
from aspects_sink.xapi import routing, store


def connect() -> None:
    """
    The queue is registered whether or not the route is on: statements recorded before it was switched
    off must still reach ClickHouse. The table provider follows ``ASPECTS_SINK_XAPI_ENABLED``.
    """
    outbox.register(store.QUEUE)
    schema.register_tables(store.raw_tables)
    routing.wire_tracker()
