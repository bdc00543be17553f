"""
A Tutor site switches from platform-plugin-aspects to aspects-sink on a working day, following the README's steps
("Switching from platform-plugin-aspects"), and Aspects' readers see the LMS's state.

Before: platform-plugin-aspects (from PyPI, in its own virtualenv) runs in the LMS, CMS and worker processes and
writes into the tables Aspects' migrations created (no ``version``), and event-routing-backends sends every xAPI
statement to the Ralph route Tutor creates, which inserts it into ``xapi.xapi_events_all`` (Ralph's layout). The
same objects then change on both sides of the switch: a learner is renamed, an enrollment changes mode, the course
is republished.
Aspects picks the latest row by ``max(time_last_dumped)`` (``max(modified)`` for course names), so that is how the
test reads ClickHouse: no stale name, no statement twice, no change lost, and no row added for what did not change.

Run once, in the tox environment ``switchover`` (the plugin's virtualenv is built on the first run and cached).
"""

from __future__ import annotations

import pytest
from aspects_schema import ASPECTS_TABLES, create_aspects_tables
from devstack_settings import drop_database

from tests.support import scenarios
from tests.support.devstacks import make_devstack, wait_until_drained
from tests.support.legacy import SiteBeforeTheSwitch
from tests.support.lrs import RalphLike, tutor_creates_the_ralph_route
from tests.support.xapi import wait_until_statements_drained

pytestmark = pytest.mark.slow

LEARNERS = ["ada", "bea", "cyd"]
# Tutor's settings for Aspects as tutor-contrib-aspects renders them (openedx-common-settings) with its
# ASPECTS_ENABLE_PII on: the switch of each sink it enables, personal models' included. Tutor's ASPECTS_ENABLE_PII
# itself never reaches Django.
TUTOR_SETTINGS = {
    **{f"EVENT_SINK_CLICKHOUSE_{sink.upper()}_ENABLED": True for sink in (
        "course_overviews", "tag", "taxonomy", "object_tag", "course_enrollment", "user_profile", "external_id",
        "auth_user",
    )},
    "EVENT_SINK_CLICKHOUSE_PII_MODELS": ["user_profile", "external_id", "auth_user"],
}  # fmt: skip


def latest(client, sql: str) -> dict:
    return {row[0]: tuple(row[1:]) if len(row) > 2 else row[1] for row in client.query(sql).result_rows}


def aspects_view(client) -> dict:
    """What Aspects' readers take as the current state: the latest row of each object."""
    return {
        "names": latest(
            client, "SELECT user_id, argMax(name, time_last_dumped) FROM event_sink.user_profile GROUP BY user_id"
        ),
        "modes": latest(
            client,
            "SELECT user_id, argMax(mode, time_last_dumped) FROM event_sink.course_enrollment "
            "GROUP BY course_key, user_id",
        ),
        "courses": latest(
            client,
            "SELECT course_key, argMax(display_name, modified) FROM event_sink.course_overviews GROUP BY course_key",
        ),
    }


def lms_view(devstack, course: str) -> dict:
    snapshot = devstack.run_function("lms", scenarios.lms_snapshot)
    title = devstack.run_python(
        "lms",
        "from openedx.core.djangoapps.content.course_overviews.models import CourseOverview\n"
        f"result = CourseOverview.objects.get(id={course!r}).display_name",
    )
    return {
        "names": {user_id: name for user_id, name, *_ in snapshot["profiles"]},
        "modes": {user_id: mode for _, user_id, mode, *_ in snapshot["enrollments"]},
        "courses": {course: title},
    }


def row_counts(client) -> dict:
    return {table: int(client.command(f"SELECT count() FROM event_sink.{table}")) for table in ASPECTS_TABLES}


def xapi_ids(client) -> list[str]:
    """The statement id of every row of the raw xAPI table (no FINAL: each insert counts)."""
    return sorted(str(row[0]) for row in client.query("SELECT event_id FROM xapi.xapi_events_all").result_rows)


@pytest.fixture
def tutor_site(tmp_path_factory):
    """A devstack on MariaDB (ERB finds Tutor's ``xAPI`` route only there) whose event_sink tables are Aspects' own."""
    devstack = make_devstack(tmp_path_factory, "switchover", database="mysql", settings=TUTOR_SETTINGS)
    try:
        admin = devstack.clickhouse_client("default")
        for table in ASPECTS_TABLES:  # made by Aspects' migrations, not by aspects_sink_schema
            admin.command(f"DROP TABLE IF EXISTS event_sink.{table}")
        create_aspects_tables(admin, "event_sink")
        yield devstack
    finally:
        devstack.stop()
        drop_database(devstack.mysql_database)


def test_switching_from_platform_plugin_aspects_keeps_aspects_equal_to_the_lms(tutor_site):
    devstack = tutor_site
    client = devstack.clickhouse_client()
    old_plugin = SiteBeforeTheSwitch(devstack)
    with RalphLike(devstack.clickhouse_client("xapi")) as ralph:
        tutor_creates_the_ralph_route(old_plugin, devstack.state_dir, ralph.url)
        old_plugin.start_delivery()

        # the morning, with platform-plugin-aspects
        course = old_plugin.run_function(
            "cms", scenarios.publish_course, org="edX", course="Switch", run="2026", display_name="Switch v1", blocks=20
        )["course"]
        morning = old_plugin.run_function(
            "lms", scenarios.a_learners_day, course=course, usernames=LEARNERS, name="Ada Morning", mode="verified",
            register=True,
        )  # fmt: skip
        old_plugin.run_function(
            "cms", scenarios.publish_course, org="edX", course="Switch", run="2026", display_name="Switch v2", blocks=20
        )
        # its course task can read the course before the publish commits (see README, Performance): its own backfill
        # is how such a site catches up, as it would before switching
        old_plugin.manage("lms", "dump_data_to_clickhouse", "--object", "course_overviews")
        devstack.wait_for(
            lambda: aspects_view(client) == lms_view(devstack, course), timeout=120, interval=2,
            what="the old plugin's rows",
        )  # fmt: skip
        morning_ids = sorted(morning["erb_ids"])
        devstack.wait_for(
            lambda: sorted(statement["id"] for statement in ralph.statements) == morning_ids, timeout=120,
            what="the morning's statements at Ralph",
        )  # fmt: skip

        # the switch, as the README says: the old plugin goes, migrate, the first backfill, aspects-sink's worker
        old_plugin.stop_delivery()
        devstack.manage("lms", "migrate", "aspects_sink", "--noinput", "-v", "0")
        before_backfill = row_counts(client)
        devstack.manage("lms", "dump_data_to_clickhouse", "--no-progress")
        after_backfill = row_counts(client)
        devstack.start_worker(beat=True)  # beat runs the sweep, as the README asks

        # the afternoon, with aspects-sink: the same objects change again
        devstack.run_function(
            "cms", scenarios.publish_course, org="edX", course="Switch", run="2026", display_name="Switch v3", blocks=20
        )
        afternoon = devstack.run_function(
            "lms", scenarios.a_learners_day, course=course, usernames=LEARNERS, name="Ada Afternoon", mode="audit"
        )
        wait_until_drained(devstack)
        wait_until_statements_drained(devstack)
        at_ralph = sorted(statement["id"] for statement in ralph.statements)

    # the backfill sent what the old plugin had not (external ids, tags) and nothing it had
    for table in ("user_profile", "course_enrollment", "course_overviews", "course_blocks"):
        assert after_backfill[table] == before_backfill[table], table
    assert after_backfill["external_id"] == len(LEARNERS)
    # Aspects' readers see the LMS: the afternoon's name, mode and title, none of the morning's
    assert aspects_view(client) == lms_view(devstack, course)
    assert aspects_view(client)["courses"] == {course: "Switch v3"}
    # every statement once: the morning's through Ralph alone, the afternoon's through aspects-sink alone
    assert at_ralph == morning_ids
    day = set(morning_ids) | set(afternoon["erb_ids"])
    assert len(day) == len(morning_ids) + len(afternoon["erb_ids"])
    assert xapi_ids(client) == sorted(day)  # every insert counts: a statement inserted twice would be listed twice
