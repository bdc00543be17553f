"""
Sinks whose objects can be deleted in the LMS (content tags): a deleted object's rows leave ClickHouse too.

The live path cannot read a deleted object again, so its outbox entry finds nothing: the objects a batch asked
for and did not find are the deleted ones, and one mutation per batch deletes their rows. That needs only the
``DELETE`` grant (ALTER DELETE), which Tutor gives the LMS's ClickHouse user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aspects_sink.sinks import schema
from aspects_sink.sinks.base import ModelSink, Stamp, Statement
from aspects_sink.transport import ColumnBatch


class DeletableModelSink(ModelSink):
    """A model sink looked up by its ``id`` column, whose own model is in ``deleted_models``."""

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch | Statement]:
        """The rows of the objects found, and a mutation deleting the rows of those no longer in the LMS."""
        fetched = self.fetch(self.queryset_for(object_ids))
        writes: list[ColumnBatch | Statement] = [self.serialize_fetched(fetched, stamp)]
        found = {str(key) for key in fetched["id"]}
        gone = sorted({int(key) for key in object_ids if str(key) not in found})
        if gone:
            writes.append(self.delete_rows(gone))
        return writes

    def delete_rows(self, keys: Sequence[int]) -> Statement:
        """``ALTER TABLE … DELETE`` of these objects' rows, on the storing tables (``ON CLUSTER`` in cluster mode)."""
        (key,) = self.key
        sql = (
            f"ALTER TABLE {schema.mutation_target(self.table)}{schema.on_cluster()} "
            f"DELETE WHERE {schema.quote(key)} IN {{keys:Array(Int64)}}"
        )
        return Statement(sql, {"keys": list(keys)}, schema.mutation_settings())
