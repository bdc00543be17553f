"""
Recording xAPI statements for ClickHouse: a statement becomes a row of the statements' queue, in the
caller's transaction, and a drain inserts it into Aspects' raw table after commit.

What is sent where is the sink's (:mod:`aspects_sink.sinks.xapi_statements`); everything else is the
outbox's: leases, one INSERT per batch, backoff while ClickHouse is down, bisection and dead letters when
it rejects data, drains woken after commit and the periodic sweep.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable

from aspects_sink import outbox
from aspects_sink.models import XapiStatement
from aspects_sink.sinks.xapi_statements import XapiStatementSink

StatementRow = tuple[str, datetime.datetime, str]


def statement_row(statement: dict) -> StatementRow:
    """
    ``(event_id, emission_time, event)`` of one statement as event-routing-backends builds it.

    The JSON keeps non-ASCII text as it is, unless the statement holds a lone surrogate (a browser's event may
    carry ``"\\ud800"``, which Python reads as one): no database stores that as UTF-8, so such a statement is
    written with JSON escapes instead, which read back as the very same statement.
    """
    emitted = datetime.datetime.fromisoformat(statement["timestamp"])
    if emitted.tzinfo is None:
        emitted = emitted.replace(tzinfo=datetime.UTC)
    text = json.dumps(statement, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(statement, separators=(",", ":"))
    return statement["id"], emitted, text


def record(statements: Iterable[dict]) -> int:
    """Queue statements in the caller's transaction; a drain inserts them after commit."""
    return queue_rows([statement_row(statement) for statement in statements])


def queue_rows(rows: Iterable[StatementRow]) -> int:
    """Queue raw-table rows in the caller's transaction; a drain inserts them after commit."""
    return outbox.queue(XapiStatementSink.name).add(
        [XapiStatement(event_id=event_id, emission_time=emitted, statement=event) for event_id, emitted, event in rows]
    )
