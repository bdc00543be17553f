"""Column types: each converts Python values into what ClickHouse expects (pure logic)."""

import datetime
import uuid
from decimal import Decimal

import pytest

from aspects_sink.sinks import columns as col

UTC = datetime.UTC


def test_strings_pass_through_and_none_becomes_empty():
    assert col.String("s").convert_all(["a", None, 3]) == ["a", "", "3"]


def test_numbers_bools_and_uuids_have_empty_values():
    assert col.Int32("i").convert_all([None, "7", 8]) == [0, 7, 8]
    assert col.Bool("b").convert_all([None, 1, False]) == [False, True, False]
    value = uuid.uuid4()
    assert col.UUID("u").convert_all([str(value), None]) == [value, uuid.UUID(int=0)]


def test_datetimes_as_text_are_utc():
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


def test_json_object_builds_sorted_json_with_constants():
    column = col.JSONObject("data", ("b", "a"), constants={"tags": {}})
    assert column.convert((Decimal("0.5"), None)) == '{"a": null, "b": "0.5", "tags": {}}'


def test_a_bad_value_fails_loudly():
    with pytest.raises(ValueError):
        col.Int32("i").convert_all(["not a number"])
