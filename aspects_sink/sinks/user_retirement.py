"""
User retirement: remove a retired learner's personal data from every ClickHouse table that holds it.

Not a row sink: its writes are mutations. Sinks named in ``EVENT_SINK_CLICKHOUSE_PII_MODELS`` lose
the user's rows; other sinks with personal columns (``course_enrollment.username``) have those
columns blanked. One mutation per table covers a whole batch of users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aspects_sink.conf import aspects_settings
from aspects_sink.sinks import schema
from aspects_sink.sinks.base import Sink, Stamp, Statement, TableSpec
from aspects_sink.sinks.registry import all_sinks


class UserRetirementSink(Sink):
    """Deletes or blanks the personal data of retired users, in every table that has a user column."""

    name = "user_retirement"
    model = "auth_user"
    order = 90
    description = "Removes retired users' personal data from every table (mutations, not rows)"

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[Statement]:
        user_ids = sorted({int(user_id) for user_id in object_ids})
        pii_sinks = set(aspects_settings.EVENT_SINK_CLICKHOUSE_PII_MODELS)
        statements = []
        for sink in all_sinks().values():
            for table in sink.tables():
                statement = self._scrub(table, delete_rows=sink.name in pii_sinks, user_ids=user_ids)
                if statement:
                    statements.append(statement)
        return statements

    def _scrub(self, table: TableSpec, *, delete_rows: bool, user_ids: list[int]) -> Statement | None:
        if table.user_id_column is None or not (delete_rows or table.pii_columns):
            return None
        target = schema.mutation_target(table.name)
        condition = f"{schema.quote(table.user_id_column)} IN {{user_ids:Array(Int64)}}"
        if delete_rows:
            sql = f"ALTER TABLE {target}{schema.on_cluster()} DELETE WHERE {condition}"
        else:
            blanks = ", ".join(
                f"{schema.quote(column.name)} = {{blank_{i}:{column.clickhouse_type}}}"
                for i, column in enumerate(table.pii_columns)
            )
            sql = f"ALTER TABLE {target}{schema.on_cluster()} UPDATE {blanks} WHERE {condition}"
        parameters: dict[str, Any] = {"user_ids": user_ids}
        parameters.update({f"blank_{i}": column.empty for i, column in enumerate(table.pii_columns)})
        return Statement(sql, parameters, schema.mutation_settings())
