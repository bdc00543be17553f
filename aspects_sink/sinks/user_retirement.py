"""
User retirement: remove a retired learner's personal data from every ClickHouse table that holds it.

Not a row sink: its writes are mutations. Sinks named in ``EVENT_SINK_CLICKHOUSE_PII_MODELS`` lose
the user's rows; other sinks with personal columns (``course_enrollment.username``) have those
columns blanked: their rows are deleted and sent again with those columns empty. Only ``DELETE``
(ALTER DELETE) and ``INSERT`` are needed, the grants Tutor gives the LMS user; ``ALTER UPDATE`` is not
among them. A mutation only changes the parts that exist when it is submitted, so the rows inserted
after it stay. One mutation per table covers a whole batch of users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aspects_sink.conf import aspects_settings
from aspects_sink.sinks import schema
from aspects_sink.sinks.base import ModelSink, Sink, Stamp, Statement, TableSpec
from aspects_sink.sinks.registry import all_sinks
from aspects_sink.transport import ColumnBatch


class UserRetirementSink(Sink):
    """Deletes or blanks the personal data of retired users, in every table that has a user column."""

    name = "user_retirement"
    model = "auth_user"
    order = 90
    description = "Removes retired users' personal data from every table (mutations, not rows)"

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[Statement | ColumnBatch]:
        user_ids = sorted({int(user_id) for user_id in object_ids})
        pii_sinks = set(aspects_settings.EVENT_SINK_CLICKHOUSE_PII_MODELS)
        writes: list[Statement | ColumnBatch] = []
        for sink in all_sinks().values():
            for table in sink.tables():
                delete_rows = sink.name in pii_sinks
                if table.user_id_column is None or not (delete_rows or table.pii_columns):
                    continue
                writes.append(self._delete(table, user_ids))
                if not delete_rows and isinstance(sink, ModelSink) and table is sink.table_spec:
                    fetched = sink.fetch(sink.queryset_for(user_ids))
                    writes.append(sink.serialize_fetched(fetched, stamp, blank_pii=True))
        return writes

    def _delete(self, table: TableSpec, user_ids: list[int]) -> Statement:
        target = schema.mutation_target(table.name)
        condition = f"{schema.quote(table.user_id_column)} IN {{user_ids:Array(Int64)}}"
        sql = f"ALTER TABLE {target}{schema.on_cluster()} DELETE WHERE {condition}"
        return Statement(sql, {"user_ids": user_ids}, schema.mutation_settings())
