"""Column types: each converts Python values into what ClickHouse expects (pure logic)."""

import datetime
import uuid
from decimal import Decimal

import pytest

from aspects_sink.sinks import columns as col

UTC = datetime.UTC


def test_strings_pass_through_and_none_becomes_empty():
    assert col.String("s").convert_all(["a", None, 3]) == ["a", "", "3"]
    assert col.String("s").convert_all(["a", None, "b"]) == ["a", "", "b"]  # text and NULLs only: the quick way
    assert col.IsoDateTimeString("d").convert_all([None, None]) == ["", ""]
    assert col.String("s").convert_all([]) == []


def test_numbers_bools_and_uuids_have_empty_values():
    assert col.Int32("i").convert_all([None, "7", 8]) == [0, 7, 8]
    assert col.Bool("b").convert_all([None, 1, False]) == [False, True, False]
    value = uuid.uuid4()
    assert col.UUID("u").convert_all([str(value), None]) == [value, uuid.UUID(int=0)]


def test_datetimes_sent_as_text_are_utc_as_platform_plugin_aspects_writes_them():
    paris = datetime.timezone(datetime.timedelta(hours=2))
    aware = datetime.datetime(2026, 1, 2, 12, 0, tzinfo=paris)
    naive = datetime.datetime(2026, 1, 2, 10, 0)
    assert col.DateTimeString("d").convert_all([aware, naive, None]) == [
        "2026-01-02 10:00:00+00:00",
        "2026-01-02 10:00:00+00:00",
        "",
    ]


def test_datetime64_takes_naive_values_as_utc():
    naive = datetime.datetime(2026, 1, 2, 10, 0)
    assert col.DateTime64("d").convert(naive) == naive.replace(tzinfo=UTC)


def test_nullable_keeps_none():
    column = col.Nullable(col.Int32("i"))
    assert column.clickhouse_type == "Nullable(Int32)"
    assert column.convert_all([None, "3"]) == [None, 3]


def test_model_datetimes_are_written_as_django_rest_framework_writes_them():
    """platform-plugin-aspects sends created/modified through DRF: ISO 8601 in UTC with Z, no zero fraction."""
    paris = datetime.timezone(datetime.timedelta(hours=2))
    column = col.IsoDateTimeString("modified")
    assert column.convert_all(
        [
            datetime.datetime(2026, 12, 1, 15, 22, 4, 333397, tzinfo=paris),
            datetime.datetime(2026, 12, 1, 13, 22, 4),
            None,
        ]
    ) == ["2026-12-01T13:22:04.333397Z", "2026-12-01T13:22:04Z", ""]


def test_json_object_keeps_member_order_and_writes_values_as_platform_plugin_aspects():
    column = col.JSONObject("data", ("b", "a", "when", "tags"))
    when = datetime.datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
    assert column.convert((Decimal("0.5"), None, when, [3, 1])) == (
        '{"b": 0.5, "a": null, "when": "2026-01-02T10:00:00+00:00", "tags": [3, 1]}'
    )


def test_a_bad_value_fails_loudly():
    with pytest.raises(ValueError):
        col.Int32("i").convert_all(["not a number"])
