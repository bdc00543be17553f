"""
Rows compared with what ClickHouse holds without reading them back: each value a sink sends is written as text the
same way on both sides — ClickHouse by SQL over what it holds (``text_sql``), Python over what the sink would send
(``texts``) — the texts of a row joined by NUL and digested with MD5. ClickHouse computes its side where the rows
are; only digests (or their sums) travel. The backfill's change tracking and reconciliation compare this way, so
what one calls equal the other does too.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from aspects_sink.sinks import columns as col
from aspects_sink.sinks import schema

# The values of a row, written as text, are joined by NUL; a NULL is written as NUL (see ``text_sql``).
SEPARATOR = "\x00"
# A digest as a number: ClickHouse's ``reinterpretAsUInt128`` reads the 16 bytes of an MD5 little-endian.
_as_number = functools.partial(int.from_bytes, byteorder="little")


def base_type(clickhouse_type: str) -> str:
    """The type inside ``Nullable(…)`` and ``LowCardinality(…)``."""
    for wrapper in ("Nullable(", "LowCardinality("):
        if clickhouse_type.startswith(wrapper):
            clickhouse_type = clickhouse_type[len(wrapper) : -1]
    return clickhouse_type


def _microseconds(value: datetime.datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return str((value - col.DateTime64.empty) // datetime.timedelta(microseconds=1))


def text_sql(column: col.Column) -> str:
    """SQL writing the value a table holds in ``column`` as the comparison's text (see ``texts``)."""
    base, name = base_type(column.clickhouse_type), schema.quote(column.name)
    if base == "Bool":
        text = f"toString(toUInt8({name}))"
    elif base.startswith("DateTime64"):
        text = f"toString(toUnixTimestamp64Micro({name}))"
    else:
        text = f"toString({name})"
    return f"ifNull({text}, char(0))" if column.clickhouse_type.startswith("Nullable(") else text


def texts(column: col.Column, values: Sequence[Any]) -> Sequence[str]:
    """The values a sink sends in ``column`` (converted) as the comparison's text, as ``text_sql`` writes them."""
    base = base_type(column.clickhouse_type)
    if base == "Bool":
        return ["1" if value else "0" for value in values]
    if base == "String" and set(map(type, values)) <= {str}:
        return values
    if base.startswith(("Int", "UInt")) and set(map(type, values)) <= {int}:
        return list(map(str, values))
    text = _microseconds if base.startswith("DateTime64") else str
    return [SEPARATOR if value is None else text(value) for value in values]


def joined_sql(columns: Sequence[col.Column]) -> str:
    """SQL writing a row's values in ``columns`` as one text: their texts joined by NUL."""
    return f"concatWithSeparator(char(0), {', '.join(text_sql(column) for column in columns)})"


def joined_texts(columns: Sequence[col.Column], data: Sequence[Sequence[Any]]) -> Iterator[str]:
    """Each row's values (``data`` holds one sequence per column, converted) as ``joined_sql`` writes them."""
    return map(SEPARATOR.join, zip(*(texts(column, values) for column, values in zip(columns, data))))


def digest_sql(columns: Sequence[col.Column]) -> str:
    """SQL of a row's digest: the MD5 of its joined texts, as a 128-bit number (sums of them wrap around)."""
    return f"reinterpretAsUInt128(MD5({joined_sql(columns)}))"


def digests(columns: Sequence[col.Column], data: Sequence[Sequence[Any]]) -> list[int]:
    """Each row's digest (``data`` holds one sequence per column, converted), as ``digest_sql`` computes it."""
    md5 = hashlib.md5
    return [_as_number(md5(text.encode("utf-8", "surrogatepass")).digest()) for text in joined_texts(columns, data)]
