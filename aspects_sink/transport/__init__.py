"""
How rows reach ClickHouse.

The transport takes a :class:`ColumnBatch` and inserts it with one statement; it knows nothing of
courses or users. One code path serves ``http(s)://`` servers and ``chdb://`` embedded engines,
because clickhouse-connect puts both behind one client API.
"""

from aspects_sink.transport.batch import ColumnBatch
from aspects_sink.transport.client import ClickHouseTransport, ConnectionConfig
from aspects_sink.transport.errors import (
    ClickHouseMisconfigured,
    ClickHouseRejected,
    ClickHouseUnavailable,
    TransportError,
)

__all__ = [
    "ClickHouseMisconfigured",
    "ClickHouseRejected",
    "ClickHouseTransport",
    "ClickHouseUnavailable",
    "ColumnBatch",
    "ConnectionConfig",
    "TransportError",
]
