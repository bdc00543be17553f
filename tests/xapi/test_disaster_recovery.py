"""
Disaster recovery, end to end: a site runs (a course published, learners registering, enrolling, changing,
one retired, learners at work sent live as xAPI, their tracking logs rotated into a bucket of moto's S3
server); its ClickHouse loses everything; the operator rebuilds it with ``aspects_sink_schema``,
``dump_data_to_clickhouse`` and ``aspects_sink_xapi_history s3://…``. Every table, xAPI statements included,
then holds what it held before the loss.

The site has a devstack of its own (SQLite, embedded broker, one worker with beat): the folder's shared
devstack holds other tests' data, which no bucket or LMS would bring back.
"""

from __future__ import annotations

import gzip
import uuid

import pytest

from tests.support import scenarios
from tests.support.devstacks import make_devstack, wait_until_drained
from tests.support.object_storage import rotated_logs
from tests.support.xapi import DEVSTACK_SETTINGS, wait_until_statements_drained

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini

DATABASES = ("event_sink", "xapi")
# Bookkeeping of a write, not data: a re-dump stamps its rows anew, the schema log the time DDL was applied.
BOOKKEEPING = {"dump_id", "time_last_dumped", "version", "applied_at"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    devstack = make_devstack(tmp_path_factory, "recovery", settings=DEVSTACK_SETTINGS)
    try:
        devstack.start_worker(beat=True)
        yield devstack
    finally:
        devstack.stop()


def snapshot(client) -> dict[str, list[tuple]]:
    """
    Every table of the plugin's databases (after FINAL where its engine collapses rows), its bookkeeping
    columns left out, rows sorted.
    """
    tables = client.query(
        "SELECT database, name, engine LIKE '%Replacing%' FROM system.tables"
        " WHERE database IN {databases:Array(String)} ORDER BY database, name",
        parameters={"databases": list(DATABASES)},
    ).result_rows
    taken = {}
    for database, table, collapsing in tables:
        columns = [
            name
            for (name,) in client.query(
                "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
                parameters={"d": database, "t": table},
            ).result_rows
            if name not in BOOKKEEPING
        ]
        selected = ", ".join(f"toString(`{name}`)" for name in columns)
        query = f"SELECT {selected} FROM {database}.{table}{' FINAL' if collapsing else ''}"
        taken[f"{database}.{table}"] = sorted(client.query(query).result_rows)
    return taken


def test_a_lost_clickhouse_is_rebuilt_from_the_lms_and_the_bucket(site, s3_environment, tmp_path):
    # A site starts with the first backfill (README): what the platform made before the plugin ran, such as
    # the system taxonomy openedx-learning's migrations create, is in ClickHouse before the loss too.
    site.manage("lms", "dump_data_to_clickhouse", "--sleep_time", "0")
    course, studied = (
        site.run_function("cms", scenarios.publish_course, org="RecX", course=name, run="2026",
                          display_name=name, blocks=20)["course"]
        for name in ("Enrolled", "Studied")
    )  # fmt: skip
    log = tmp_path / "tracking.log.gz"
    site.run_function(
        "lms", scenarios.a_site_at_work_and_its_tracking_log, course=course, studied=studied, log=str(log)
    )
    lines = gzip.decompress(log.read_bytes()).decode().splitlines()
    bucket = f"site-{uuid.uuid4().hex[:12]}"
    s3_environment.bucket_of_logs(bucket, rotated_logs(lines, "lms/", ["2026-03-01", "2026-03-02", "2026-03-03"]))
    wait_until_drained(site)
    wait_until_statements_drained(site)
    client = site.clickhouse_client(database="default")  # the others are dropped
    before = snapshot(client)
    for table in ("course_overviews", "course_blocks", "user_profile", "external_id", "course_enrollment"):
        assert before[f"event_sink.{table}"], table
    assert len(before["xapi.xapi_events_all"]) > 80  # the learners' 80 events, and the enrollments'

    for database in DATABASES:  # everything lost
        client.command(f"DROP DATABASE {database}")
    assert not client.query("SELECT name FROM system.databases WHERE name IN ('event_sink', 'xapi')").result_rows

    site.manage("lms", "aspects_sink_schema")
    site.manage("lms", "dump_data_to_clickhouse", "--sleep_time", "0", "--no-progress")
    restored = site.manage("lms", "aspects_sink_xapi_history", f"s3://{bucket}/lms/", "--no-progress").stdout
    assert f"{len(before['xapi.xapi_events_all'])} statements written" in restored

    after = snapshot(client)
    assert list(after) == list(before)
    for table, rows in before.items():
        assert after[table] == rows, table
