"""Courses: only those changed since their last dump, decided with one query per page; --force without duplicates."""

import pytest
from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
from xmodule.modulestore.course_builder import create_course

pytestmark = pytest.mark.django_db


def test_courses_are_dumped_with_their_blocks(backfill_clickhouse, dump, course):
    course(1, blocks=12)
    course(2, blocks=20)

    dump("--object", "course_overviews")

    assert backfill_clickhouse.count("course_overviews") == 2
    assert backfill_clickhouse.count("course_blocks") == 32


def test_a_second_run_skips_unchanged_courses_and_sends_changed_ones(backfill_clickhouse, dump, summary, course):
    keys = [course(number) for number in range(1, 6)]
    dump("--object", "course_overviews")
    create_course("BackfillX", keys[2].course, "2025", "Course 3, revised", blocks=14)  # a new publish

    output = dump("--object", "course_overviews", "--batch_size", "2")

    assert summary(output)["course_overviews"] == (1, 4, 0)  # rows, skipped, failed
    assert backfill_clickhouse.count("course_overviews") == 6
    revised = backfill_clickhouse.client.query(
        "SELECT display_name FROM event_sink_backfill.course_overviews FINAL WHERE course_key = {key:String}",
        parameters={"key": str(keys[2])},
    ).result_rows
    assert revised == [("Course 3, revised",)]


def test_what_changed_is_decided_with_one_clickhouse_query_per_page_of_courses(
    backfill_clickhouse, dump, course, clickhouse_selects
):
    for number in range(1, 8):
        course(number)

    dump("--object", "course_overviews", "--batch_size", "2")
    dump("--object", "course_overviews", "--batch_size", "2")

    reads_of_last_dumps = [sql for sql in clickhouse_selects if "course_overviews" in sql and "GROUP BY" in sql]
    assert len(reads_of_last_dumps) == 2 * 4  # per run one per page of two courses, not one per course


def test_force_dumps_unchanged_courses_again_without_duplicates(backfill_clickhouse, dump, summary, course):
    for number in range(1, 4):
        course(number, blocks=10)
    dump("--object", "course_overviews")

    output = dump("--object", "course_overviews", "--force")

    assert summary(output)["course_overviews"] == (3, 0, 0)
    assert backfill_clickhouse.count("course_overviews") == 6  # sent twice...
    assert backfill_clickhouse.count("course_overviews", final=True) == 3  # ...one row per course
    assert backfill_clickhouse.count("course_blocks", final=True) == 30
    backfill_clickhouse.command("OPTIMIZE TABLE event_sink_backfill.course_overviews FINAL")
    backfill_clickhouse.command("OPTIMIZE TABLE event_sink_backfill.course_blocks FINAL")
    assert backfill_clickhouse.count("course_overviews") == 3
    assert backfill_clickhouse.count("course_blocks") == 30


def test_course_ids_are_course_keys(backfill_clickhouse, dump, course):
    first, second = course(1), course(2)

    dump("--object", "course_overviews", "--ids", str(second))

    assert backfill_clickhouse.column("course_overviews", "course_key") == [str(second)]
    dump("--object", "course_overviews", "--start_pk", str(first))
    assert backfill_clickhouse.column("course_overviews", "course_key") == [str(second)]


def test_limit_counts_courses_sent_not_courses_skipped(backfill_clickhouse, dump, summary, course):
    keys = [course(number) for number in range(1, 6)]
    dump("--object", "course_overviews", "--ids", str(keys[0]), str(keys[1]))

    output = dump("--object", "course_overviews", "--limit", "2")

    assert summary(output)["course_overviews"] == (2, 2, 0)
    assert backfill_clickhouse.column("course_overviews", "course_key") == sorted(str(key) for key in keys[:4])
    assert CourseOverview.objects.count() == 5
