"""
The live path end to end: platform actions in LMS/CMS processes, a real Celery worker, the devstack
ClickHouse endpoint. ClickHouse must end up equal to the LMS, with no duplicates and no personal data
of a retired user — on SQLite with the embedded broker, and on MariaDB with Redis.
"""

from __future__ import annotations

import math
import random

import pytest

from tests.support import scenarios
from tests.support.devstacks import TEST_SETTINGS, drop_mysql_database, make_devstack, wait_until_drained
from tests.support.services import require_service

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini


def _devstack_params():
    return [
        pytest.param({"database": "sqlite"}, id="sqlite-embedded-broker"),
        pytest.param({"database": "mysql", "broker": "redis"}, id="mariadb-redis"),
    ]


@pytest.fixture(scope="module", params=_devstack_params())
def devstack(request, tmp_path_factory):
    options = dict(request.param)
    broker_url = None
    if options.pop("broker", None) == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        # Not the `random` pytest-randomly seeds: runs side by side with one seed must not pick one database.
        broker_url = f"redis://127.0.0.1:6379/{random.SystemRandom().randint(1, 15)}"
    devstack = make_devstack(tmp_path_factory, "live", broker_url=broker_url, **options)
    devstack.start_worker(beat=True)
    yield devstack
    devstack.stop()
    drop_mysql_database(devstack)


@pytest.fixture(scope="module")
def changes(devstack):
    """
    Every kind of change the sinks follow, made once per devstack and drained: a published course, learners
    who register, enroll and change, and a learner who is retired (``retired_id``).
    """
    published = devstack.run_function(
        "cms", scenarios.publish_course, org="edX", course="E2E", run="2026", display_name="End to end", blocks=1200
    )
    outcome = devstack.run_function("lms", scenarios.make_every_kind_of_change, course=published["course"])
    wait_until_drained(devstack)
    return {**published, **outcome}


def _table(client, sql: str) -> list:
    return sorted(list(row) for row in client.query(sql).result_rows)


def test_clickhouse_equals_the_lms_after_every_kind_of_change(devstack, changes):
    assert changes["blocks"] >= 1000
    wait_until_drained(devstack)
    lms = devstack.run_function("lms", scenarios.lms_snapshot)
    ch = devstack.clickhouse_client()
    retired_id = changes["retired_id"]

    profiles = _table(ch, "SELECT user_id, name, username, email, city FROM user_profile FINAL")
    expected_profiles = [row for row in lms["profiles"] if row[0] != retired_id]
    assert [row for row in profiles if row[0] != retired_id] == expected_profiles
    assert ["ghost" in row[2] for row in profiles].count(True) == 0

    external_ids = _table(ch, "SELECT toString(external_user_id), user_id, username FROM external_id FINAL")
    assert [row for row in external_ids if row[1] != retired_id] == [
        row for row in lms["external_ids"] if row[1] != retired_id
    ]

    enrollments = _table(ch, "SELECT course_key, user_id, mode, is_active, username FROM course_enrollment FINAL")
    assert [row for row in enrollments if row[1] != retired_id] == [
        row for row in lms["enrollments"] if row[1] != retired_id
    ]

    def of_the_course(table: str) -> int:
        sql = f"SELECT count() FROM {table} FINAL WHERE course_key = {{c:String}}"
        return ch.command(sql, parameters={"c": changes["course"]})

    assert of_the_course("course_blocks") == changes["blocks"]
    assert of_the_course("course_overviews") == 1


def test_an_enrollment_made_in_studio_reaches_clickhouse(devstack, changes):
    """Studio enrolls a course's creator and its new instructors itself: the CMS records enrollments too."""
    prefix = f"studio{random.SystemRandom().randint(0, 10**9)}"
    devstack.run_function("lms", scenarios.create_users, prefix=prefix, count=1)  # registered long before
    wait_until_drained(devstack)
    user_id = devstack.run_function(
        "cms", scenarios.studio_adds_an_instructor, course=changes["course"], username=f"{prefix}0"
    )
    wait_until_drained(devstack)
    ch = devstack.clickhouse_client()
    enrolled = ch.query(
        "SELECT course_key, is_active FROM course_enrollment FINAL WHERE user_id = {u:Int64}", parameters={"u": user_id}
    ).result_rows
    assert enrolled == [(changes["course"], 1)]


def test_no_object_has_two_rows(devstack, changes):
    ch = devstack.clickhouse_client()
    for table, key in (
        ("user_profile", "user_id"),
        ("external_id", "external_user_id"),
        ("course_enrollment", "course_key, user_id"),
        ("course_blocks", "location"),
        ("course_overviews", "course_key"),
    ):
        assert ch.command(f"SELECT count() FROM {table}") > 0, table  # the changes reached every table
        duplicates = ch.command(
            f"SELECT count() FROM (SELECT {key} FROM {table} FINAL GROUP BY {key} HAVING count() > 1)"
        )
        assert duplicates == 0, table


def test_retired_user_personal_data_is_in_no_table(devstack, changes):
    ch = devstack.clickhouse_client()
    for table in ("user_profile", "external_id", "course_enrollment", "course_overviews", "course_blocks"):
        columns = [row[0] for row in ch.query(f"DESCRIBE TABLE {table}").result_rows]
        text = " || ' ' || ".join(f"toString(`{name}`)" for name in columns)
        for needle in ("learner11", "Learner 11"):
            hits = ch.command(
                f"SELECT count() FROM {table} WHERE position({text}, {{needle:String}}) > 0",
                parameters={"needle": needle},
            )
            assert hits == 0, f"{needle!r} still in {table}"


def test_a_publishing_storm_is_dumped_once_or_twice(devstack):
    """
    A course is dumped at most once per dump interval, so twenty publications within one interval make one
    or two dumps (the first publication's, then one for the rest). A machine too slow to publish twenty
    times within the interval gets one more dump per interval the storm outlasted, and no more.
    """
    storm = devstack.run_function("cms", scenarios.publishing_storm, publishes=20, pause=0.5, blocks=200)
    wait_until_drained(devstack)
    ch = devstack.clickhouse_client()
    course = {"c": storm["course"]}
    dumps = ch.command(
        "SELECT uniqExact(version) FROM course_overviews WHERE course_key = {c:String}", parameters=course
    )

    interval = TEST_SETTINGS["ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS"]
    intervals_outlasted = math.ceil((storm["seconds"] + 1) / interval) - 1  # 0 when it fits in one (1 s of margin)
    drains = [
        line
        for worker in devstack.workers
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if "drain sink=course_overviews" in line
    ]
    assert 1 <= dumps <= 2 + intervals_outlasted, (
        f"{dumps} dumps of a storm of {storm['seconds']:.1f}s; the worker's drains:\n" + "\n".join(drains)
    )
    # the last dump holds the last publication
    final = "SELECT display_name FROM course_overviews FINAL WHERE course_key = {c:String}"
    assert ch.command(final, parameters=course) == storm["display_name"]
