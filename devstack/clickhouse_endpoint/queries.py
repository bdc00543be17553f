"""What one HTTP request asks the engine to do, once the handler has checked who sent it and decoded its body.

This is the part of ClickHouse's HTTP protocol that is not HTTP: the statement split between the ``query`` parameter
and the body, an insert's data after its ``FORMAT`` clause, settings and parameters in the URL, the result format.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from .engine import DEFAULT_FORMAT, Engine, QueryOptions
from .errors import ClickHouseError
from .http_compression import reject_native_compression
from .policy import check_no_outside_io, check_read_only
from .sql import InsertWithData, output_format, parse_insert_with_data, returns_result_set


@dataclass(frozen=True)
class QueryReply:
    data: bytes
    summary: Mapping[str, str]
    result_format: str | None  # None for statements that do not return a result set


@contextmanager
def _data_file(data: bytes) -> Iterator[str]:
    """Hold insert data in a temporary file for ``INFILE``; its suffix keeps chDB from guessing a compression."""
    handle, path = tempfile.mkstemp(prefix="clickhouse-insert-", suffix=".data")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        yield path
    finally:
        os.unlink(path)


def request_statement(url_query: str, body: bytes) -> bytes:
    """The request's statement, which ClickHouse reads from the ``query`` parameter followed by the body."""
    if url_query and body:
        return url_query.encode() + b"\n" + body
    return url_query.encode() or body


def parse_insert(url_query: str, body: bytes) -> InsertWithData | None:
    """Find an insert with client data; a statement complete in the URL takes the whole body as its data."""
    insert = parse_insert_with_data(url_query.encode()) if url_query else None
    if insert is not None:
        return InsertWithData(insert.target, insert.settings_clause, insert.data_format, insert.data + body)
    return parse_insert_with_data(request_statement(url_query, body))


# Checks a user's grants for a statement in a database (see ``grants``); None for the server's own user.
GrantCheck = Callable[[bytes, str], None]


def execute_request(
    engine: Engine,
    url_parameters: Mapping[str, str],
    body: bytes,
    *,
    read_only: bool = False,
    check_grants: GrantCheck | None = None,
) -> QueryReply:
    """
    Run what one HTTP request asks for; ``read_only`` for GET requests, which ClickHouse lets only read;
    ``check_grants`` refuses what the request's user has no grant for.
    """
    reject_native_compression(url_parameters)
    options = QueryOptions.from_url(url_parameters)
    url_query = url_parameters.get("query", "")
    if read_only:
        check_read_only(request_statement(url_query, body))
    insert = parse_insert(url_query, body)
    if insert is not None:
        check_no_outside_io(f"{insert.target}{insert.settings_clause}".encode())  # never the data that follows
        if check_grants:
            check_grants(insert.target.encode(), options.database)
        with _data_file(insert.data) as path:
            result = engine.execute(insert.reading_from(path), DEFAULT_FORMAT, options)
        return QueryReply(result.data, result.summary, None)
    sql = request_statement(url_query, body)
    if not sql.strip():
        raise ClickHouseError.of(62, "SYNTAX_ERROR", "Empty query.")
    check_no_outside_io(sql)
    if check_grants:
        check_grants(sql, options.database)
    default_format = url_parameters.get("default_format") or DEFAULT_FORMAT
    result = engine.execute(sql.decode(), default_format, options)  # chDB, too, lets a FORMAT clause win
    result_format = output_format(sql, default_format) if returns_result_set(sql) else None
    return QueryReply(result.data, result.summary, result_format)
