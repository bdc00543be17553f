"""
xAPI statements on their way to ClickHouse: their queue in the LMS database and their rows in Aspects'
raw table.

Statements are a queue with a table of its own (:class:`~aspects_sink.models.XapiStatement`) because,
unlike platform objects, an event cannot be read again at send time: the entry carries the statement.
Everything else is the outbox's: leases, one INSERT per batch, backoff while ClickHouse is down,
bisection and dead letters when it rejects data, drains woken after commit and the periodic sweep.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings

from aspects_sink import outbox
from aspects_sink.models import XapiStatement
from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import Sink, Stamp, TableSpec
from aspects_sink.transport import ColumnBatch

SINK_NAME = "xapi_statements"
RAW_COLUMNS = (col.UUID("event_id"), col.DateTime64("emission_time"), col.String("event"))
_CHUNK = 900  # stay under SQLite's bound on parameters per statement

StatementRow = tuple[str, datetime.datetime, str]


@dataclass(frozen=True)
class RawTableSpec(TableSpec):
    """
    Aspects' raw xAPI table (Ralph's layout): no bookkeeping columns, since a statement never changes;
    ReplacingMergeTree without a version, so a statement sent twice collapses; monthly partitions.
    """

    database: str = "xapi"
    partition_by: str | None = "toYYYYMM(emission_time)"
    version_column: str | None = None

    @property
    def all_columns(self) -> tuple[col.Column, ...]:
        return self.columns

    @property
    def qualified_name(self) -> str:
        return f"{self.database}.{self.name}"


def raw_table() -> RawTableSpec:
    """The raw table statements go to (``ASPECTS_SINK_XAPI_DATABASE``.``ASPECTS_SINK_XAPI_TABLE``)."""
    return RawTableSpec(
        name=settings.ASPECTS_SINK_XAPI_TABLE,
        columns=RAW_COLUMNS,
        key=("emission_time", "event_id"),
        database=settings.ASPECTS_SINK_XAPI_DATABASE,
    )


def raw_tables() -> tuple[RawTableSpec, ...]:
    """For the schema command: the raw table, when statements are routed to ClickHouse."""
    return (raw_table(),) if settings.ASPECTS_SINK_XAPI_ENABLED else ()


def statement_row(statement: dict) -> StatementRow:
    """``(event_id, emission_time, event)`` of one statement as event-routing-backends builds it."""
    emitted = datetime.datetime.fromisoformat(statement["timestamp"])
    if emitted.tzinfo is None:
        emitted = emitted.replace(tzinfo=datetime.UTC)
    return statement["id"], emitted, json.dumps(statement, separators=(",", ":"), ensure_ascii=False)


def raw_batch(rows: Sequence[StatementRow]) -> ColumnBatch:
    """One INSERT's worth of statements for the raw table."""
    table = raw_table()
    values = list(zip(*rows)) if rows else [(), (), ()]
    return ColumnBatch(
        table=table.qualified_name,
        column_names=tuple(column.name for column in RAW_COLUMNS),
        column_types=tuple(column.clickhouse_type for column in RAW_COLUMNS),
        columns=tuple(column.convert_all(column_values) for column, column_values in zip(RAW_COLUMNS, values)),
    )


class XapiStatementSink(Sink):
    """
    Writes queued statements to the raw table. Not in the sink registry: it reads no platform model and
    has nothing to backfill; its queue (:data:`QUEUE`) names it to the drains.
    """

    name = SINK_NAME
    drain_interval_setting = "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS"
    description = "xAPI statements from event-routing-backends, into the raw xAPI table"

    def is_enabled(self) -> bool:
        """Always: statements recorded before the route was switched off are still owed to ClickHouse."""
        return True

    def tables(self) -> tuple[TableSpec, ...]:
        return raw_tables()

    def writes_for(self, object_ids: Sequence[int], stamp: Stamp) -> list[ColumnBatch]:
        """The queued statements of these entries (statements carry their own identity: no stamp)."""
        rows: list[StatementRow] = []
        for start in range(0, len(object_ids), _CHUNK):
            chunk = object_ids[start : start + _CHUNK]
            rows += XapiStatement.objects.filter(pk__in=chunk).values_list("event_id", "emission_time", "statement")
        return [raw_batch(rows)]


QUEUE = outbox.Queue(
    SINK_NAME,
    model=XapiStatement,
    sink_field=None,
    key_field="pk",
    sink=XapiStatementSink(),
    batch_size_setting="ASPECTS_SINK_XAPI_BATCH_SIZE",
    max_attempts_setting="ASPECTS_SINK_XAPI_MAX_ATTEMPTS",
    max_dead_setting="ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS",
    payload_field="statement",
)


def record(statements: Iterable[dict]) -> int:
    """Queue statements in the caller's transaction; a drain inserts them after commit."""
    return queue_rows([statement_row(statement) for statement in statements])


def queue_rows(rows: Iterable[StatementRow]) -> int:
    """Queue raw-table rows in the caller's transaction; a drain inserts them after commit."""
    return QUEUE.add(
        [XapiStatement(event_id=event_id, emission_time=emitted, statement=event) for event_id, emitted, event in rows]
    )
