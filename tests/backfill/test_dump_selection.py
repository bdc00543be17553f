"""Which objects a dump sends: everything, --limit, --ids, --ids_to_skip, --start_pk, every enabled sink."""

import pytest
from common.djangoapps.student.models import CourseEnrollment, UserProfile

from aspects_sink.models import DumpCheckpoint

pytestmark = pytest.mark.django_db


def profile_ids():
    return list(UserProfile.objects.order_by("id").values_list("id", flat=True))


def test_dump_sends_every_profile_once_with_the_live_path_columns(backfill_clickhouse, dump, learners):
    learners(7)

    dump("--object", "user_profile", "--batch_size", "3")

    assert backfill_clickhouse.count("user_profile") == 7
    assert backfill_clickhouse.column("user_profile", "id") == profile_ids()
    assert backfill_clickhouse.column("user_profile", "username") == sorted(f"learner{n}" for n in range(7))
    assert set(backfill_clickhouse.column("user_profile", "country")) == {"GB"}


def test_batches_are_one_insert_per_table_each_with_its_own_version(backfill_clickhouse, dump, learners):
    learners(7)

    dump("--object", "user_profile", "--batch_size", "3")

    versions = backfill_clickhouse.client.query(
        "SELECT version, count() FROM event_sink_backfill.user_profile GROUP BY version ORDER BY version"
    ).result_rows
    assert [count for _, count in versions] == [3, 3, 1]


@pytest.mark.parametrize(
    "limit_batch_expected",
    [
        ("1", "3", 1),  # the smallest limit
        ("5", "3", 5),  # not a multiple of the batch size
        ("6", "3", 6),  # a multiple
        ("2", "10", 2),  # smaller than one batch
        ("50", "3", 7),  # more than the table holds
    ],
)
def test_limit_stops_after_exactly_that_many_objects(backfill_clickhouse, dump, learners, limit_batch_expected):
    limit, batch_size, expected = limit_batch_expected
    learners(7)

    dump("--object", "user_profile", "--limit", limit, "--batch_size", batch_size)

    assert backfill_clickhouse.column("user_profile", "id") == profile_ids()[:expected]
    checkpoint = DumpCheckpoint.objects.get(sink="user_profile")
    assert (checkpoint.rows, checkpoint.state) == (expected, DumpCheckpoint.DONE)


def test_ids_dump_only_those_objects_and_leave_checkpoints_alone(backfill_clickhouse, dump, learners):
    learners(5)
    first, _, third, *_ = profile_ids()

    dump("--object", "user_profile", "--ids", str(first), f" {third} ")

    assert backfill_clickhouse.column("user_profile", "id") == [first, third]
    assert not DumpCheckpoint.objects.exists()


def test_ids_to_skip_leaves_those_objects_out(backfill_clickhouse, dump, learners):
    learners(5)
    ids = profile_ids()

    dump("--object", "user_profile", "--ids_to_skip", str(ids[1]), str(ids[3]), "--batch_size", "2")

    assert backfill_clickhouse.column("user_profile", "id") == [ids[0], ids[2], ids[4]]


def test_start_pk_dumps_the_objects_after_that_key(backfill_clickhouse, dump, learners):
    learners(5)
    ids = profile_ids()

    dump("--object", "user_profile", "--start_pk", str(ids[1]))

    assert backfill_clickhouse.column("user_profile", "id") == ids[2:]


def test_enrollments_keyed_by_their_own_id_even_when_a_user_has_several(backfill_clickhouse, dump, learners, course):
    first_course, second_course = course(1), course(2)
    for user in learners(3):
        CourseEnrollment.enroll(user, first_course)
        CourseEnrollment.enroll(user, second_course, mode="verified")

    dump("--object", "course_enrollment", "--batch_size", "4", "--limit", "5")

    assert backfill_clickhouse.count("course_enrollment") == 5
    assert sorted(backfill_clickhouse.column("course_enrollment", "id")) == sorted(
        CourseEnrollment.objects.order_by("id").values_list("id", flat=True)[:5]
    )


def test_without_object_every_enabled_dumpable_sink_runs_in_registry_order(
    backfill_clickhouse, dump, summary, enrollments, settings
):
    settings.EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED = False
    enrollments(3)

    output = dump("--no-progress")

    assert list(summary(output)) == [
        "course_overviews",
        "user_profile",
        "course_enrollment",
        "taxonomy",
        "tag",
        "object_tag",
    ]
    assert "user_retirement" not in output
    assert backfill_clickhouse.count("course_overviews") == 1
    assert backfill_clickhouse.count("course_blocks") == 12
    assert backfill_clickhouse.count("user_profile") == backfill_clickhouse.count("course_enrollment") == 3


def test_object_all_is_the_same_as_no_object(backfill_clickhouse, dump, learners):
    learners(2)

    output = dump("--object", "all", "--no-progress")

    assert "user_profile" in output
    assert "external_id" in output
    assert backfill_clickhouse.count("user_profile") == 2


def test_dry_run_counts_and_writes_nothing(backfill_clickhouse, dump, summary, learners):
    learners(6)

    output = dump("--object", "user_profile", "--limit", "4", "--batch_size", "5", "--dry-run")

    assert backfill_clickhouse.count("user_profile") == 0
    assert not DumpCheckpoint.objects.exists()
    assert summary(output) == {"user_profile": (4, 0, 0)}
    assert "dry run: nothing written" in output
