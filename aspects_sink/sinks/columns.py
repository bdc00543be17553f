"""
Column types: each knows its ClickHouse type and one conversion, Python value → what clickhouse-connect
sends. Like a serializer field in Django REST framework, a column knows nothing of tables or HTTP.

Conversions run column-wise (``convert_all``) over a whole batch, which is where the speed of a
backfill comes from: no model instances, no dict per row.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

UTC = datetime.UTC
_STR = {str}
_STR_OR_NONE = {str, type(None)}


class Column:
    """
    One column of a sink's table.

    ``source`` is the ORM path the value is read from (``"user__username"``); a tuple of paths hands
    ``convert`` a tuple. ``pii`` marks personal data: it is blanked when ``ASPECTS_ENABLE_PII`` is
    off and scrubbed when the user is retired.
    """

    clickhouse_type = "String"
    empty: Any = ""

    def __init__(self, name: str, source: str | tuple[str, ...] | None = None, *, pii: bool = False):
        self.name = name
        self.source = source if source is not None else name
        self.pii = pii

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.clickhouse_type})"

    @property
    def sources(self) -> tuple[str, ...]:
        return self.source if isinstance(self.source, tuple) else (self.source,)

    def convert(self, value: Any) -> Any:
        """Convert one value; ``None`` becomes the type's empty value."""
        return self.empty if value is None else value

    def convert_all(self, values: Sequence[Any]) -> list:
        convert = self.convert
        return [convert(value) for value in values]


class String(Column):
    """A ClickHouse String; anything that is not a string is sent as its ``str()``."""

    def convert(self, value: Any) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else str(value)

    def convert_all(self, values: Sequence[Any]) -> list:
        kinds = set(map(type, values))  # at C speed: the common cases are CharField values, some of them NULL
        if kinds <= _STR:
            return list(values)
        if kinds <= _STR_OR_NONE:
            return [self.empty if value is None else value for value in values]
        return super().convert_all(values)


class LowCardinalityString(String):
    """A String ClickHouse stores as a dictionary: for columns with few distinct values (mode)."""

    clickhouse_type = "LowCardinality(String)"


class Int32(Column):
    """A signed 32-bit integer; ``None`` is 0."""

    clickhouse_type = "Int32"
    empty = 0

    def convert(self, value: Any) -> int:
        return 0 if value is None else int(value)


class UInt64(Int32):
    """An unsigned 64-bit integer; ``None`` is 0."""

    clickhouse_type = "UInt64"


class Bool(Column):
    """A Bool; ``None`` is False."""

    clickhouse_type = "Bool"
    empty = False

    def convert(self, value: Any) -> bool:
        return bool(value)


class UUID(Column):
    """A UUID; strings are parsed, ``None`` is the nil UUID."""

    clickhouse_type = "UUID"
    empty = uuid.UUID(int=0)

    def convert(self, value: Any) -> uuid.UUID:
        if value is None:
            return self.empty
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


class DateTime64(Column):
    """DateTime64(6, 'UTC'): naive datetimes are taken to be UTC, as Django stores them."""

    clickhouse_type = "DateTime64(6, 'UTC')"
    empty = datetime.datetime(1970, 1, 1, tzinfo=UTC)

    def convert(self, value: Any) -> datetime.datetime:
        if value is None:
            return self.empty
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class DateTimeString(String):
    """
    A date or time stored as text, as Aspects' tables do (``course_start String``), in UTC, written as
    platform-plugin-aspects writes a datetime it sends as plain text (``course_start``, ``edited_on``):
    ``str()`` of the UTC datetime, ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``. ``None`` is the empty string.
    """

    def convert(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime.datetime):
            value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return str(value)


class IsoDateTimeString(String):
    """
    A model's DateTimeField as text, exactly as platform-plugin-aspects sends it (Django REST framework's
    ISO 8601 representation in UTC): ``2026-12-01T13:22:04.333397Z``, without the fraction when it is zero.

    Aspects' readers take the latest row by string maxima (``max(modified)``): a site switching from that
    plugin keeps rows of both, and only the same format compares in time order. ``None`` is the empty string.
    """

    def convert(self, value: Any) -> str:
        if value is None:
            return ""
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.isoformat().removesuffix("+00:00") + "Z"


class Nullable(Column):
    """Wrap another column type so ``None`` stays NULL."""

    empty = None

    def __init__(self, inner: Column):
        super().__init__(inner.name, inner.source, pii=inner.pii)
        self.inner = inner
        self.clickhouse_type = f"Nullable({inner.clickhouse_type})"

    def convert(self, value: Any) -> Any:
        return None if value is None else self.inner.convert(value)


def aspects_json_value(value: Any) -> Any:
    """
    How platform-plugin-aspects' JSON columns write what ``json`` cannot: datetimes in UTC and dates as
    ISO 8601 (``2026-12-01T13:22:04+00:00``), decimals as numbers.
    """
    if isinstance(value, datetime.datetime):
        return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def aspects_json(data: dict) -> str:
    """A JSON column's text as platform-plugin-aspects writes it: members in their order, ``json.dumps`` spacing."""
    return json.dumps(data, default=aspects_json_value)


def aspects_json_list(values: list) -> str:
    """A JSON array as platform-plugin-aspects writes one (a tag's lineage)."""
    return json.dumps(values, default=aspects_json_value)


class JSONObject(String):
    """
    A String holding a JSON object built from several sources, e.g. ``course_data_json``.

    ``keys`` name the JSON members, in the order of ``source``, which is the order they are written in;
    values are written by :func:`aspects_json`.
    """

    def __init__(
        self,
        name: str,
        keys: Sequence[str],
        source: tuple[str, ...] | None = None,
        *,
        pii: bool = False,
    ):
        super().__init__(name, tuple(source or keys), pii=pii)
        self.keys = tuple(keys)

    def convert(self, value: Any) -> str:
        return aspects_json(dict(zip(self.keys, value)))


class Computed(Column):
    """A column whose value a function derives from its sources (``convert`` = that function)."""

    def __init__(
        self,
        name: str,
        clickhouse_type: str,
        source: str | tuple[str, ...],
        function: Callable[[Any], Any],
        *,
        pii: bool = False,
    ):
        super().__init__(name, source, pii=pii)
        self.clickhouse_type = clickhouse_type
        self.function = function

    def convert(self, value: Any) -> Any:
        return self.function(value)
