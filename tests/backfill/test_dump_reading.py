"""A batch read column by column holds what Django's ``values_list`` gives, converters and annotations included."""

import pytest

from aspects_sink.sinks.reading import read_columns
from aspects_sink.sinks.registry import get_sink

pytestmark = pytest.mark.django_db


def by_values_list(queryset, names):
    rows = list(queryset.values_list(*names))
    return dict(zip(names, zip(*rows) if rows else [() for _ in names]))


@pytest.mark.parametrize("sink_name", ["user_profile", "course_enrollment", "course_overviews"])
def test_columns_are_values_list_s_values(backfill_clickhouse, enrollments, course, sink_name):
    enrolled = enrollments(4)
    enrolled[1].update_enrollment(is_active=False)
    course(2)
    sink = get_sink(sink_name)
    names = (*sink._sources, "pk")  # datetimes, booleans, course keys, an annotation between fields, the key again
    queryset = sink.queryset().order_by("pk")

    read = read_columns(queryset, names)

    expected = by_values_list(queryset, names)
    assert {name: list(values) for name, values in read.items()} == {
        name: list(values) for name, values in expected.items()
    }
    assert len(read["pk"]) >= 2


def test_a_queryset_that_can_match_nothing_reads_nothing(backfill_clickhouse, learners):
    learners(2)
    sink = get_sink("user_profile")

    read = read_columns(sink.queryset().filter(pk__in=[]), sink._sources)

    assert read == dict.fromkeys(sink._sources, ())
