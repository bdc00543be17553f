"""
The ClickHouse connection: one client per process and thread, inserts of whole batches, and
parameterized statements. Values always travel as server-side parameters, never inside SQL text.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver import exceptions as ch_errors

from aspects_sink.transport.batch import ColumnBatch
from aspects_sink.transport.errors import (
    CONFIGURATION_CODES,
    UNAVAILABLE_CODES,
    ClickHouseMisconfigured,
    ClickHouseRejected,
    ClickHouseUnavailable,
    TransportError,
)

log = logging.getLogger(__name__)

_ERROR_CODE = re.compile(r"\bCode:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True, repr=False)
class ConnectionConfig:
    """
    Where ClickHouse is and how to log in; the shape of ``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG``.

    ``url`` is ``http(s)://host:port/`` for a server or ``chdb://<path>`` for an embedded engine.
    The password never appears in ``repr()``, so the config is safe to log.
    """

    url: str
    username: str = "default"
    password: str = ""
    database: str = "default"
    timeout_secs: float = 5
    read_timeout_secs: float = 30
    verify: bool | str = True
    ca_cert: str | None = None
    client_cert: str | None = None
    client_cert_key: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> ConnectionConfig:
        """Build a config from a settings dict, ignoring keys this version does not know."""
        known = {name: values[name] for name in cls.__dataclass_fields__ if values.get(name) is not None}
        known.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**known)

    def __repr__(self) -> str:
        return f"ConnectionConfig({self.safe_url!r}, username={self.username!r}, database={self.database!r})"

    @property
    def is_embedded(self) -> bool:
        return self.url.startswith("chdb:")

    @property
    def safe_url(self) -> str:
        """The URL without any credentials it may carry, for messages and logs."""
        parts = _split(self.url)
        if parts is None:
            return f"{self.url.partition(':')[0]}://(a malformed URL, not shown)"
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _split(url: str) -> SplitResult | None:
    """
    The URL's parts; None when they cannot be told apart: a password with ``/``, ``?``, ``#`` or ``@`` written
    into it unencoded ends the host part early, and what follows would be taken for a port or a path (and shown).
    """
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - a port that is no number raises
    except ValueError:
        return None
    if "@" in parts.path + parts.query + parts.fragment:
        return None
    return parts


def _client_arguments(config: ConnectionConfig) -> dict[str, Any]:
    if config.is_embedded:
        return {"dsn": config.url}
    parts = _split(config.url)
    if parts is None:
        raise ClickHouseMisconfigured(
            "the ClickHouse URL cannot be read: percent-encode the special characters of a user or password in it "
            "(%2F for /, %40 for @, %23 for #, %3F for ?), or give them as 'username' and 'password'"
        )
    arguments = {
        "interface": parts.scheme or "http",
        "host": parts.hostname,
        "username": unquote(parts.username) if parts.username else config.username,
        "password": unquote(parts.password) if parts.password else config.password,
        "connect_timeout": config.timeout_secs,
        # A big INSERT (a 20,000-block course) may take the server longer than a connection may: reads wait the
        # longer of the two settings.
        "send_receive_timeout": max(config.timeout_secs, config.read_timeout_secs),
        "verify": config.verify,
        "ca_cert": config.ca_cert,
        "client_cert": config.client_cert,
        "client_cert_key": config.client_cert_key,
        # Server sessions lock per request; the plugin keeps no session state, so it opens none.
        "autogenerate_session_id": False,
    }
    if parts.port:
        arguments["port"] = parts.port
    return {name: value for name, value in arguments.items() if value is not None}


def error_code(error: BaseException) -> int | None:
    """
    ClickHouse's error code: clickhouse-connect's ``code`` (from the ``X-ClickHouse-Exception-Code`` header,
    or chDB's message), else the ``Code: N`` of the message (chDB's own exceptions, older drivers).
    """
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    match = _ERROR_CODE.search(str(error))
    return int(match.group(1)) if match else None


def classify(error: Exception, what: str) -> TransportError:
    """
    Sort a clickhouse-connect, chDB or network exception by ClickHouse's error code into unavailable (wait),
    misconfigured (pause until fixed) or rejected (the data is at fault). Without a code, a failure to talk to
    the server at all (network, HTTP status without a ClickHouse exception) is unavailability.
    """
    if isinstance(error, TransportError):
        return error
    message = f"{what}: {error}"
    code = error_code(error)
    if code in CONFIGURATION_CODES:
        return ClickHouseMisconfigured(message, code)
    if code in UNAVAILABLE_CODES:
        return ClickHouseUnavailable(message, code)
    if code is None and isinstance(error, ch_errors.OperationalError | OSError | TimeoutError):
        return ClickHouseUnavailable(message)
    if code is None and isinstance(error, ch_errors.DatabaseError) and "HTTP" in str(error):
        return ClickHouseUnavailable(message)
    return ClickHouseRejected(message, code)


class ClickHouseTransport:
    """
    Inserts column batches and runs parameterized statements against one ClickHouse database.

    Each thread gets its own clickhouse-connect client (they are not thread-safe), created on first
    use so that building a transport never needs ClickHouse to be up.
    """

    def __init__(self, config: ConnectionConfig):
        self.config = config
        self._local = threading.local()
        self._table_columns: dict[str, dict[str, str]] = {}
        self._reported_optional: set[str] = set()

    def __repr__(self) -> str:
        return f"ClickHouseTransport({self.config.safe_url}, database={self.config.database!r})"

    def with_database(self, database: str) -> ClickHouseTransport:
        return ClickHouseTransport(replace(self.config, database=database))

    @property
    def client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            try:
                client = clickhouse_connect.get_client(
                    database=self.config.database if not self.config.is_embedded else None,
                    **_client_arguments(self.config),
                )
            except Exception as error:
                raise self._connection_error(error) from error
            self._local.client = client
        return client

    def _connection_error(self, error: Exception) -> TransportError:
        classified = classify(error, f"cannot connect to ClickHouse at {self.config.safe_url}")
        if isinstance(classified, ClickHouseRejected):  # no data was sent: the connection itself is wrong
            return ClickHouseMisconfigured(str(classified), classified.code)
        return classified

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def qualified(self, table: str) -> str:
        return table if "." in table else f"{self.config.database}.{table}"

    def insert(self, batch: ColumnBatch, settings: Mapping[str, Any] | None = None) -> int:
        """
        Insert the whole batch with one INSERT that names its columns; return the rows written.

        A column the batch carries and the table lacks is a configuration error naming both (nothing is
        dropped silently), unless the batch declares it optional (``version`` in tables an existing Aspects
        install created, docs/decisions/0002); an optional column left out is logged once per table. No
        setting that lets ClickHouse skip bad rows is ever sent: a row ClickHouse refuses fails the insert.
        """
        if not batch.row_count:
            return 0
        table = self.qualified(batch.table)
        existing = self.table_columns(table)
        missing = [name for name in batch.column_names if name not in existing]
        required = [name for name in missing if name not in batch.optional_columns]
        if required:
            self._table_columns.pop(table, None)  # look again next time: someone may add them
            raise ClickHouseMisconfigured(
                f"table {table} on {self.config.safe_url} has no column {', '.join(required)}: "
                "run `./manage.py lms aspects_sink_schema` or add the column",
                16,  # NO_SUCH_COLUMN_IN_TABLE
            )
        if missing and table not in self._reported_optional:
            self._reported_optional.add(table)
            log.warning("aspects_sink: table %s has no column %s; writing without it", table, ", ".join(missing))
        batch = batch.only_columns(set(existing), existing)
        try:
            self.client.insert(
                table,
                data=batch.columns,
                column_names=list(batch.column_names),
                column_type_names=list(batch.column_types),
                column_oriented=True,
                settings=dict(settings or {}),
            )
        except Exception as error:
            self._table_columns.pop(table, None)  # the schema may have changed under us
            raise classify(error, f"insert of {batch.row_count} rows into {table}") from error
        return batch.row_count

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None, settings=None):
        """Run a statement; values go as server-side parameters (``{name:Type}`` placeholders)."""
        try:
            return self.client.command(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
        except Exception as error:
            raise classify(error, _first_line(sql)) from error

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None, settings=None) -> list[tuple]:
        """Run a query and return its rows as tuples."""
        try:
            result = self.client.query(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
        except Exception as error:
            raise classify(error, _first_line(sql)) from error
        return list(result.result_rows)

    def table_columns(self, table: str) -> dict[str, str]:
        """Column name → ClickHouse type of ``db.table``, cached for the life of the transport."""
        if table not in self._table_columns:
            database, _, name = table.rpartition(".")
            found = self.rows(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                {"db": database, "t": name},
            )
            if not found:
                raise ClickHouseMisconfigured(
                    f"table {table} does not exist on {self.config.safe_url}: "
                    "run `./manage.py lms aspects_sink_schema` to create it",
                    60,  # UNKNOWN_TABLE
                )
            self._table_columns[table] = dict(found)
        return self._table_columns[table]

    def ping(self) -> str:
        """Return the server version, or raise ClickHouseUnavailable (or ClickHouseMisconfigured)."""
        return str(self.command("SELECT version()"))


def _first_line(sql: str) -> str:
    return " ".join(sql.split())[:120]
