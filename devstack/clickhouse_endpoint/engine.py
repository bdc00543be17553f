"""The chDB engine: one connection, shared by every request, that must behave as if each request had its own.

chDB is ClickHouse inside a Python process. Loading it is slow and only the serving process needs it, so it is
imported when the engine starts rather than when the package is imported.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import ClickHouseError
from .sql import quote_identifier, quote_string

DEFAULT_FORMAT = "TabSeparated"
SERVER_TIMEZONE = "UTC"

# URL parameters that steer ClickHouse's HTTP layer rather than the query: never applied as settings.
HTTP_ONLY_PARAMETERS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "role",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "stacktrace",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "cancel_http_readonly_queries_on_client_close",
    }
)
HTTP_ONLY_PARAMETER_PREFIX = "http_"
QUERY_PARAMETER_PREFIX = "param_"  # param_<name>: a value for {name:Type} in the query

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class QueryOptions:
    """What a request asks for besides its SQL: the current database, per-query settings, query parameters."""

    database: str = "default"
    settings: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url_parameters: Mapping[str, str]) -> QueryOptions:
        settings = {
            name: value
            for name, value in url_parameters.items()
            if name not in HTTP_ONLY_PARAMETERS
            and not name.startswith((HTTP_ONLY_PARAMETER_PREFIX, QUERY_PARAMETER_PREFIX))
        }
        parameters = {
            name.removeprefix(QUERY_PARAMETER_PREFIX): value
            for name, value in url_parameters.items()
            if name.startswith(QUERY_PARAMETER_PREFIX)
        }
        return cls(url_parameters.get("database") or "default", settings, parameters)


@dataclass(frozen=True)
class EngineResult:
    data: bytes
    summary: Mapping[str, str]


class Engine:
    """The process's one chDB connection.

    A chDB connection runs one query at a time, so a lock serializes them; the connection's current database and
    settings are set for each query and the settings put back afterwards, so requests do not leak into each other.
    """

    def __init__(self, data_dir: str) -> None:
        import chdb  # only the serving process needs the engine, which is heavy to load

        self._connection = chdb.connect(data_dir)
        self._lock = threading.Lock()
        self.timezone = self.execute("SELECT timezone()", DEFAULT_FORMAT, QueryOptions()).data.decode().strip()

    def execute(self, sql: str, result_format: str, options: QueryOptions) -> EngineResult:
        with self._lock:
            try:
                self._run(f"USE {quote_identifier(options.database)}")
                with self._settings_applied(options.settings):
                    result = self._connection.query(sql, result_format, params=dict(options.parameters))
            except RuntimeError as error:  # chdb.ChdbError
                raise ClickHouseError.from_engine(error) from None
        return EngineResult(result.bytes(), _summary(result))

    def close(self) -> None:
        """Close once the running query, if any, is done, so that its data is fully written."""
        with self._lock:
            self._connection.close()

    @contextmanager
    def _settings_applied(self, settings: Mapping[str, str]) -> Iterator[None]:
        applied = []
        try:
            for name, value in settings.items():
                if not _SETTING_NAME.fullmatch(name):
                    raise ClickHouseError.of(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'.")
                self._run(f"SET {name} = {quote_string(value)}")
                applied.append(name)
            yield
        finally:
            for name in applied:
                self._run(f"SET {name} = DEFAULT")

    def _run(self, sql: str) -> None:
        self._connection.query(sql, DEFAULT_FORMAT)


def _summary(result: Any) -> dict[str, str]:
    """The counters ClickHouse puts in X-ClickHouse-Summary, as strings like ClickHouse's."""
    counters = {
        "read_rows": result.rows_read(),
        "read_bytes": result.bytes_read(),
        "written_rows": result.rows_written(),
        "written_bytes": result.bytes_written(),
        "elapsed_ns": round(result.elapsed() * 1e9),
    }
    return {name: str(value) for name, value in counters.items()}
