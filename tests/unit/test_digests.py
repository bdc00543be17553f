"""
Reconciliation and the backfill's change tracking trust that ClickHouse digests a row exactly as Python digests
the values a sink sends: every column type, awkward values included (NULL, empty and non-ASCII text, times with
and without a fraction, before 1970), inserted as the drains insert them and digested on both sides.
"""

import datetime
import uuid

from aspects_sink.sinks import columns as col
from aspects_sink.sinks import digests
from aspects_sink.transport import ColumnBatch

UTC = datetime.UTC
COLUMNS = (
    col.Int32("n"),
    col.UInt64("big"),
    col.String("text"),
    col.LowCardinalityString("mode"),
    col.Bool("flag"),
    col.UUID("external"),
    col.DateTime64("at"),
    col.Nullable(col.String("maybe")),
    col.IsoDateTimeString("iso"),
)
VALUES = (
    (1, 2**63 + 5, "plain", "audit", True, uuid.UUID(int=7), datetime.datetime(2026, 12, 1, 13, 22, 4, 333397, UTC),
     None, datetime.datetime(2026, 12, 1, 13, 22, 4, tzinfo=UTC)),
    (2, 0, "", "", False, None, datetime.datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC), "", None),
    (-3, 1, "Zoë 学习 🎓\ttab\nline", "honor", None, "6f0b6c1e-3b1a-4b9e-9a53-7f0c1d0a5e11",
     datetime.datetime(2000, 1, 1), "ünïcode", datetime.datetime(1999, 12, 31, 23, 59, 59, 1, UTC)),
)  # fmt: skip


def test_clickhouse_digests_each_row_as_python_does(embedded_clickhouse):
    transport = embedded_clickhouse
    table = "event_sink.digest_check"
    definition = ", ".join(f"`{column.name}` {column.clickhouse_type}" for column in COLUMNS)
    transport.command(f"CREATE TABLE {table} ({definition}) ENGINE = MergeTree ORDER BY n")
    data = [column.convert_all(values) for column, values in zip(COLUMNS, zip(*VALUES))]
    transport.insert(
        ColumnBatch(
            table=table,
            column_names=tuple(column.name for column in COLUMNS),
            column_types=tuple(column.clickhouse_type for column in COLUMNS),
            columns=tuple(data),
        )
    )

    in_python = dict(zip(data[0], digests.digests(COLUMNS, data)))
    in_clickhouse = dict(transport.rows(f"SELECT n, {digests.digest_sql(COLUMNS)} FROM {table}"))
    assert in_clickhouse == in_python
    assert len(set(in_python.values())) == len(VALUES)
    # A range's summary: the sum wraps around at 128 bits in ClickHouse, as reconciliation masks it in Python.
    total = transport.rows(f"SELECT sum({digests.digest_sql(COLUMNS)}) FROM {table}")[0][0]
    assert total == sum(in_python.values()) & ((1 << 128) - 1)
