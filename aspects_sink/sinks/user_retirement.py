"""
User retirement: remove a retired learner's personal data from every ClickHouse table that holds it.

Not a row sink: its writes are mutations, followed to their end in ``system.mutations``. Rows of sinks that
delete retired users' rows (``EVENT_SINK_CLICKHOUSE_PII_MODELS``, sinks whose rows are personal) are deleted.
Tables of other sinks with personal columns (``course_enrollment.username``, a site sink's ``city``) lose the
users' rows too, and the sink writes them again from the LMS, where recorded retired users' personal columns
are always empty. So retirement needs only ``ALTER … DELETE``, which Tutor's ``DELETE`` grant allows, never
``ALTER … UPDATE``. One mutation per table covers a whole batch of users (docs/decisions/0008).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aspects_sink.sinks.base import ModelSink, Sink, Stamp, Statement
from aspects_sink.sinks.registry import all_sinks
from aspects_sink.transport import ColumnBatch


class UserRetirementSink(Sink):
    """Deletes retired users' rows, and writes back without personal values those of tables that keep them."""

    name = "user_retirement"
    model = "auth_user"
    order = 90
    splittable = False
    description = "Removes retired users' personal data from every table (mutations, not rows)"

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch | Statement]:
        user_ids = sorted({int(user_id) for user_id in object_ids})
        writes: list[ColumnBatch | Statement] = []
        for sink in all_sinks().values():
            for table in sink.tables():
                if table.user_id_column is None or not (sink.deletes_retired_rows or table.pii_columns):
                    continue
                writes.append(table.delete_users(user_ids))
                if not sink.deletes_retired_rows and isinstance(sink, ModelSink) and sink.is_enabled():
                    # After the DELETE has finished: the rows again, with the personal columns empty.
                    kept = sink.queryset().filter(**{f"{sink.user_source}__in": user_ids})
                    writes.append(sink.serialize(kept, stamp))
        return writes
