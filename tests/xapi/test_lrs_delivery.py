"""
A site with LRS routes in event-routing-backends, on MariaDB as production runs it (ERB finds its ``xAPI``
routes under the name ``xapi`` only with MySQL's case-insensitive matching):

* the route Tutor creates for Aspects' Ralph (``populate_model`` with Tutor's JSON), whose Ralph inserts into the
  same ``xapi.xapi_events_all``, gets nothing once aspects-sink routes statements: each statement is in ClickHouse
  once, so Aspects' materialized views fire once;
* an LRS the operator keeps on purpose (made by ``aspects_sink_xapi_lrs`` and listed in
  ``ASPECTS_SINK_XAPI_LRS_ROUTE_URLS``) gets every statement, with its credentials.
"""

from __future__ import annotations

import base64
import uuid

import pytest
from devstack_settings import drop_database
from processes import Devstack

from tests.support.lrs import RalphLike, RecordingLRS, tutor_creates_the_ralph_route
from tests.support.xapi import DEVSTACK_SETTINGS, learners_do_a_course, statements_of, wait_for_statements

pytestmark = [pytest.mark.slow, pytest.mark.platform_processes]

USERNAME, PASSWORD = "lrs-user", "lrs-password"


def test_each_statement_reaches_clickhouse_once_and_only_kept_lrs_routes_get_them(tmp_path, mariadb):
    database = f"aspects_e2e_lrs_{uuid.uuid4().hex[:8]}"
    devstack = Devstack(tmp_path, settings=DEVSTACK_SETTINGS, database="mysql", mysql_database=database)
    try:
        with devstack, RalphLike(devstack.clickhouse_client("xapi")) as ralph, RecordingLRS() as kept:
            tutor_creates_the_ralph_route(devstack, devstack.state_dir, ralph.url)
            devstack.manage(
                "lms", "aspects_sink_xapi_lrs", "--route_url", kept.url, "--username", USERNAME, "--password", PASSWORD
            )
            devstack.update_settings(ASPECTS_SINK_XAPI_LRS_ROUTE_URLS=[kept.url])
            devstack.start_worker()
            activity = learners_do_a_course(devstack, "LrsX", learners=3, rounds=2)
            emitted = activity["emitted"]

            client = devstack.clickhouse_client()
            wait_for_statements(devstack, client, activity["course"], emitted)
            devstack.wait_for(lambda: len(kept.statements) >= emitted, timeout=60, what="the statements at the LRS")

            assert sorted(statement["id"] for statement in kept.statements) == sorted(activity["erb_ids"])
            assert kept.authorizations == {"Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}
            assert ralph.statements == []
            in_clickhouse = statements_of(client, activity["course"])  # without FINAL: every insert counts
            assert sorted(row[1] for row in in_clickhouse) == sorted(activity["erb_ids"])
    finally:
        drop_database(database)
