"""
A backfill without --force sends only the objects whose state differs from the latest row ClickHouse holds,
on every dumpable sink: on tables Aspects' migrations created (MergeTree families without ``version``, where
each re-sent object would add a row for good) and on aspects-sink's own. What ClickHouse holds is read per
page of keys, never per object.
"""

from __future__ import annotations

import pytest
from aspects_schema import create_aspects_tables
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from openedx_tagging.core.tagging import api as tagging
from xmodule.modulestore.course_builder import create_course

pytestmark = pytest.mark.django_db

ASPECTS_DATABASE = "event_sink_aspects"
DUMPED_TABLES = ("course_overviews", "user_profile", "external_id", "course_enrollment", "taxonomy", "tag",
                 "object_tag")  # fmt: skip


@pytest.fixture
def aspects_tables(backfill_clickhouse, settings):
    """Aspects' own tables (as its migrations create them, no ``version``), emptied; the command writes there."""
    client = backfill_clickhouse.client
    create_aspects_tables(client, ASPECTS_DATABASE)
    for table in (*DUMPED_TABLES, "course_blocks"):
        client.command(f"TRUNCATE TABLE {ASPECTS_DATABASE}.{table}")
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
        **settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
        "database": ASPECTS_DATABASE,
    }

    def count(table: str) -> int:
        return int(client.command(f"SELECT count() FROM {ASPECTS_DATABASE}.{table}"))

    return count


@pytest.fixture
def site(learners, course):
    """Learners with profiles, external ids and enrollments, a published course, and content tags on it."""
    users = learners(4)
    course_key = course(7, blocks=10)
    for user in users:
        ExternalId.add_new_user_id(user, "xapi")
        CourseEnrollment.enroll(user, course_key)
    subjects = tagging.create_taxonomy("Subjects", export_id="subjects")
    tagging.add_tag_to_taxonomy(subjects, "Science")
    tagging.tag_object(str(course_key), subjects, ["Science"])
    return {"users": users, "course": course_key}


def latest(client, sql: str) -> list[tuple]:
    return [tuple(row) for row in client.query(sql).result_rows]


def test_a_second_dump_into_aspects_tables_adds_no_row(aspects_tables, dump, summary, site):
    dump("--no-progress")
    first = {table: aspects_tables(table) for table in (*DUMPED_TABLES, "course_blocks")}

    output = dump("--no-progress")

    assert {table: aspects_tables(table) for table in first} == first
    assert first["user_profile"] == first["external_id"] == first["course_enrollment"] == 4
    assert first["course_overviews"] == first["object_tag"] == 1
    assert first["course_blocks"] == 10
    assert {sink: counts[0] for sink, counts in summary(output).items()} == dict.fromkeys(DUMPED_TABLES, 0)
    assert summary(output)["user_profile"] == (0, 4, 0)  # rows, skipped, failed


def test_changed_objects_alone_are_sent_again_and_aspects_reads_their_new_state(
    aspects_tables, backfill_clickhouse, dump, summary, site
):
    dump("--no-progress")
    renamed = site["users"][1]
    profile = UserProfile.objects.get(user=renamed)
    profile.name = "Renamed Learner"
    profile.save()
    enrollment = CourseEnrollment.objects.get(user=site["users"][2], course_id=site["course"])
    enrollment.change_mode("verified")
    create_course("BackfillX", site["course"].course, "2025", "Course 7, revised", blocks=10)  # a republish

    output = dump("--no-progress")

    sent = summary(output)
    assert (sent["user_profile"], sent["course_enrollment"]) == ((1, 3, 0), (1, 3, 0))  # rows, skipped, failed
    assert sent["course_overviews"][0] == 1
    assert aspects_tables("user_profile") == 5
    assert aspects_tables("course_enrollment") == 5
    assert aspects_tables("external_id") == 4
    client = backfill_clickhouse.client
    # Aspects' readers: the row with the greatest time_last_dumped per user, the greatest modified per course
    names = latest(
        client,
        f"SELECT user_id, argMax(name, time_last_dumped) FROM {ASPECTS_DATABASE}.user_profile "
        "GROUP BY user_id ORDER BY user_id",
    )
    assert dict(names)[renamed.id] == "Renamed Learner"
    modes = latest(
        client,
        f"SELECT user_id, argMax(mode, time_last_dumped) FROM {ASPECTS_DATABASE}.course_enrollment GROUP BY user_id",
    )
    assert dict(modes)[site["users"][2].id] == "verified"
    titles = latest(
        client,
        f"SELECT course_key, argMax(display_name, modified) FROM {ASPECTS_DATABASE}.course_overviews "
        "GROUP BY course_key",
    )
    assert titles == [(str(site["course"]), "Course 7, revised")]


def test_force_sends_every_object_again(aspects_tables, dump, summary, site):
    dump("--object", "user_profile", "--no-progress")

    output = dump("--object", "user_profile", "--force", "--no-progress")

    assert summary(output)["user_profile"] == (4, 0, 0)
    assert aspects_tables("user_profile") == 8


def test_on_aspects_sinks_own_tables_an_unchanged_object_is_not_sent_again(
    backfill_clickhouse, dump, summary, learners
):
    learners(5)
    dump("--object", "user_profile", "--no-progress")
    UserProfile.objects.filter(user__username="learner3").update(city="Leeds")

    output = dump("--object", "user_profile", "--no-progress")

    assert summary(output)["user_profile"] == (1, 4, 0)
    assert backfill_clickhouse.count("user_profile") == 6
    assert backfill_clickhouse.column("user_profile", "city").count("Leeds") == 1


def test_an_object_clickhouse_lacks_is_sent_even_when_its_text_holds_a_nul(
    backfill_clickhouse, dump, summary, learners
):
    """A row whose values hold a NUL has no comparable digest: it is sent, whether ClickHouse holds it or not."""
    learners(2)
    dump("--object", "user_profile", "--no-progress")
    (newcomer,) = learners(1, prefix="newcomer")
    UserProfile.objects.filter(user=newcomer).update(bio="nul\x00 inside")

    output = dump("--object", "user_profile", "--no-progress")

    assert summary(output)["user_profile"] == (1, 2, 0)  # rows, skipped, failed
    assert backfill_clickhouse.column("user_profile", "bio").count("nul\x00 inside") == 1


def test_what_clickhouse_holds_is_read_once_per_page_not_per_object(aspects_tables, dump, learners, clickhouse_selects):
    learners(9)
    dump("--object", "user_profile", "--batch_size", "4", "--no-progress")
    clickhouse_selects.clear()

    dump("--object", "user_profile", "--batch_size", "4", "--no-progress")

    reads = [sql for sql in clickhouse_selects if "user_profile" in sql and "GROUP BY" in sql]
    assert len(reads) == 3  # pages of 4, 4 and 1 profiles
    assert aspects_tables("user_profile") == 9
