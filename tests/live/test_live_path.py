"""
The live path end to end: platform actions in LMS/CMS processes, a real Celery worker, the devstack
ClickHouse endpoint. ClickHouse must end up equal to the LMS, with no duplicates and no personal data
of a retired user — on SQLite with the embedded broker, and on MariaDB with Redis.
"""

from __future__ import annotations

import random

import pytest
from conftest import drop_mysql_database, make_devstack, require_service, wait_until_drained

SCENARIO = """
import datetime
from django.contrib.auth.models import User
from django.db import transaction
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from openedx.core.djangoapps.user_api.accounts.api import retire_user
from opaque_keys.edx.keys import CourseKey

course = CourseKey.from_string(COURSE)
users = [create_user(f"learner{i}", f"learner{i}@example.com", name=f"Learner {i}", city="Lyon") for i in range(12)]
for user in users:
    ExternalId.add_new_user_id(user, "xapi")
    CourseEnrollment.enroll(user, course, "audit")

# profile changes, a username change, an email change through update_fields, and a login (ignored)
for user in users[:4]:
    profile = UserProfile.objects.get(user=user)
    profile.city = "Paris"
    profile.save()
users[4].username = "renamed4"
users[4].save()
users[5].email = "new5@example.com"
users[5].save(update_fields=["email"])
users[6].last_login = datetime.datetime.now(datetime.timezone.utc)
users[6].save(update_fields=["last_login"])

# enrollment changes: unenroll, change of mode (sends only COURSE_ENROLLMENT_CHANGED), re-enroll
CourseEnrollment.unenroll(users[7], course)
CourseEnrollment.objects.get(user=users[8], course_id=course).change_mode("verified")
CourseEnrollment.unenroll(users[9], course)
CourseEnrollment.enroll(users[9], course, "honor")

# a transaction that rolls back sends nothing
try:
    with transaction.atomic():
        create_user("ghost", "ghost@example.com", name="Ghost")
        raise RuntimeError("rolled back")
except RuntimeError:
    pass

retire_user(users[11])
result = {"retired_id": users[11].id}
"""

SNAPSHOT = """
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from openedx.core.djangoapps.external_user_ids.models import ExternalId
result = {
    "profiles": sorted([p.user_id, p.name, p.user.username, p.user.email, p.city] for p in UserProfile.objects.all()),
    "external_ids": sorted([str(e.external_user_id), e.user_id, e.user.username] for e in ExternalId.objects.all()),
    "enrollments": sorted(
        [str(e.course_id), e.user_id, e.mode, e.is_active, e.user.username] for e in CourseEnrollment.objects.all()
    ),
}
"""

PUBLISH = """
from xmodule.modulestore.course_builder import create_course
from xmodule.modulestore.django import modulestore
key = create_course("edX", "E2E", "2026", display_name="End to end", blocks=1200)
result = {"course": str(key), "blocks": len(modulestore().get_items(key))}
"""


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
        broker_url = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    devstack = make_devstack(tmp_path_factory, "live", broker_url=broker_url, **options)
    devstack.start_worker(beat=True)
    yield devstack
    devstack.stop()
    drop_mysql_database(devstack)


def _table(client, sql: str) -> list:
    return sorted(list(row) for row in client.query(sql).result_rows)


def test_clickhouse_equals_the_lms_after_every_kind_of_change(devstack):
    published = devstack.run_python("cms", PUBLISH)
    assert published["blocks"] >= 1000
    outcome = devstack.run_python("lms", SCENARIO.replace("COURSE", repr(published["course"])))
    wait_until_drained(devstack)
    lms = devstack.run_python("lms", SNAPSHOT)
    ch = devstack.clickhouse_client()
    retired_id = outcome["retired_id"]

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

    blocks = ch.command(
        "SELECT count() FROM course_blocks FINAL WHERE course_key = {c:String}", parameters={"c": published["course"]}
    )
    assert blocks == published["blocks"]
    assert ch.command("SELECT count() FROM course_overviews FINAL") == 1


def test_no_object_has_two_rows(devstack):
    ch = devstack.clickhouse_client()
    for table, key in (
        ("user_profile", "user_id"),
        ("external_id", "external_user_id"),
        ("course_enrollment", "course_key, user_id"),
        ("course_blocks", "location"),
        ("course_overviews", "course_key"),
    ):
        duplicates = ch.command(
            f"SELECT count() FROM (SELECT {key} FROM {table} FINAL GROUP BY {key} HAVING count() > 1)"
        )
        assert duplicates == 0, table


def test_retired_user_personal_data_is_in_no_table(devstack):
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


STORM = """
import time
from xmodule.modulestore.course_builder import create_course
for _ in range(20):
    key = create_course("edX", "Storm", "2026", blocks=200)
    time.sleep(0.5)
result = str(key)
"""


def test_a_publishing_storm_is_dumped_once_or_twice(devstack):
    course = devstack.run_python("cms", STORM)
    wait_until_drained(devstack)
    ch = devstack.clickhouse_client()
    dumps = ch.command(
        "SELECT uniqExact(version) FROM course_overviews WHERE course_key = {c:String}", parameters={"c": course}
    )
    assert 1 <= dumps <= 2
