"""
Everything aspects-sink does at run time works with exactly the grants Tutor gives the LMS's ClickHouse user
(``INSERT, SELECT, DELETE`` on ``event_sink.*`` and on the xAPI database), proved statement by statement: the
devstack's ClickHouse endpoint enforces that user's grant table and records every check. The live path (profiles,
enrollments, a course publish, content tags and their deletion), retirement, xAPI statements and a backfill run as
that user; only the schema command runs as an administrator (see README, "Switching from platform-plugin-aspects").
"""

from __future__ import annotations

import pytest

from tests.support import scenarios
from tests.support.devstacks import make_devstack, outbox_counts, wait_until_drained
from tests.support.xapi import learners_do_a_course, wait_until_statements_drained

pytestmark = [pytest.mark.slow, pytest.mark.platform_processes]

TUTOR_PRIVILEGES = {"INSERT", "SELECT", "ALTER DELETE", "METADATA"}  # METADATA: DESCRIBE/SHOW, any grant allows it


@pytest.fixture(scope="module")
def devstack(tmp_path_factory):
    devstack = make_devstack(
        tmp_path_factory, "grants", tutor_grants=True, settings={"ASPECTS_SINK_RETIREMENT_WAIT": True}
    )
    devstack.start_worker()
    yield devstack
    devstack.stop()


def test_every_run_time_path_needs_only_tutors_grants(devstack):
    published = devstack.run_function(
        "cms", scenarios.publish_course, org="edX", course="Grants", run="2026", display_name="Grants", blocks=40
    )
    devstack.run_function("cms", scenarios.tag_a_course_and_a_block, course=published["course"])
    devstack.run_function("lms", scenarios.make_every_kind_of_change, course=published["course"])
    activity = learners_do_a_course(devstack, "GrantsX", learners=2, rounds=1)
    wait_until_drained(devstack)
    wait_until_statements_drained(devstack)
    devstack.manage("lms", "dump_data_to_clickhouse", "--no-progress")
    devstack.manage("lms", "dump_data_to_clickhouse", "--object", "course_overviews", "--force", "--no-progress")

    checks = devstack.clickhouse.grant_checks()
    refused = [check for check in checks if not check["allowed"]]
    assert refused == []
    assert outbox_counts(devstack)["dead"] == 0
    used = {(check["privilege"], check["database"]) for check in checks}
    assert {privilege for privilege, _ in used} <= TUTOR_PRIVILEGES
    assert {database for _, database in used} <= {"event_sink", "xapi"}
    # every path ran: inserts into both databases, reads (backfill), deletes (retirement, an untagged object)
    assert {
        ("INSERT", "event_sink"),
        ("INSERT", "xapi"),
        ("SELECT", "event_sink"),
        ("ALTER DELETE", "event_sink"),
    } <= used
    assert activity["emitted"] > 0
    deletes = [check["statement"] for check in checks if check["privilege"] == "ALTER DELETE"]
    assert any("`object_tag`" in statement for statement in deletes)
    assert any("`course_enrollment`" in statement for statement in deletes)
