"""
The fault matrix: each scenario breaks something real (a process killed or frozen, a table renamed, a grant
revoked, a row ClickHouse rejects, hostile input) while learners work, on each path it applies to (the live
sinks, the backfill, the xAPI route) and on both backends; then ClickHouse after ``FINAL`` is compared exactly
with what the LMS holds (or with the statements of the committed events). Every cell is printed and recorded
(``tests/support/faults.py``) and must show nothing lost, nothing twice, nothing unexpected and no learner
request failed. Cells that cannot happen are listed, with the reason, in ``faults.NOT_APPLICABLE``.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest

from tests.support import scenarios
from tests.support.faults import (
    BACKENDS,
    PATIENCE,
    Count,
    course_count,
    learner_count,
    request_in_flight,
    statement_count,
    wait_until,
)

BOTH = pytest.mark.parametrize("stack", BACKENDS, indirect=True, scope="module")
REDIS = pytest.mark.parametrize("stack", ["mariadb-redis"], indirect=True, scope="module")
SQLITE = pytest.mark.parametrize("stack", ["sqlite-embedded"], indirect=True, scope="module")
ALL_PATHS = pytest.mark.parametrize("path", ["live", "backfill", "xapi"])
LIVE_AND_XAPI = pytest.mark.parametrize("path", ["live", "xapi"])
LEARNERS = 6
XAPI_LEARNERS = 2  # five statements each


def new_prefix() -> str:
    """Usernames, courses and statements of one scenario start with this (fixed length: none is another's prefix)."""
    return f"f{uuid.uuid4().hex[:8]}"


class Cell:
    """One scenario on one path: its objects, the changes made, the requests that failed, and the comparison."""

    def __init__(self, stack, scenario: str, path: str):
        self.stack, self.scenario, self.path = stack, scenario, path
        self.prefix = new_prefix()
        self.course = f"course-v1:Fault+{self.prefix}+2026"
        self.changes = 0
        self.failed: list[str] = []
        self.expected: dict = {}
        self.started = time.monotonic()

    def act(self, result: dict) -> dict:
        self.changes += result["changes"]
        self.failed += result["failed"]
        return result

    def make_changes(self, count: int = LEARNERS, **options) -> dict:
        """Learners register and enroll (live), or history to backfill (bulk), or learner activity (xAPI)."""
        if self.path == "xapi":
            result = self.act(
                self.stack.lms.call(
                    scenarios.fault_activity,
                    name=self.prefix,
                    learners=options.pop("learners", XAPI_LEARNERS),
                    **options,
                )
            )
            self.course = result["course"]
            self.expected.update(result["expected"])
            return result
        bulk = self.path == "backfill"
        return self.act(self.stack.learners(self.prefix, self.course, count, bulk=bulk, **options))

    def counter(self):
        """What counts the scenario's rows in ClickHouse against what the LMS holds now (or the committed events)."""
        client, prefix, course = self.stack.client(), self.prefix, self.course
        if self.path == "xapi":
            return lambda: statement_count(client, course, self.expected)
        expected = self.stack.lms.call(scenarios.fault_snapshot, prefix=prefix, course=course)
        return lambda: learner_count(client, prefix, course, expected)

    def settle(self) -> Count:
        return self.stack.settle(self.counter())

    def finish(self, notes: str = "", count: Count | None = None):
        count = count if count is not None else self.settle()
        return self.stack.finish(
            self.scenario,
            self.path,
            changes=self.changes,
            count=count,
            failed=self.failed,
            seconds=time.monotonic() - self.started,
            notes=notes,
        )


def wait_for_request_in_flight(stack) -> None:
    """Until a request sits unanswered at the frozen ClickHouse: an insert (or the claim's read) is mid-way."""
    wait_until(lambda: request_in_flight(stack.clickhouse.port), "a request waiting at the frozen ClickHouse")


def start_slow_dump(stack):
    """
    A backfill of the profiles in batches of two, three seconds apart, once its first batch is acknowledged: a
    scenario's dozen profiles keep it running for a quarter of a minute, so it is mid-run when the scenario's next
    step comes, however loaded the machine. Start what takes long (a worker) before it.
    """
    # --force: every page sends its rows (without it, pages of profiles ClickHouse holds go by in a blink).
    dump = stack.start_dump("--object", "user_profile", "--force", "--batch_size", "2", "--sleep_time", "3")
    wait_until(lambda: stack.db.running_dump_rows("user_profile") >= 2, "a batch of the run acknowledged")
    return dump


# -- ClickHouse killed, frozen ---------------------------------------------------------------------------------------


@BOTH
@ALL_PATHS
def test_clickhouse_killed_mid_batch(stack, path):
    cell = Cell(stack, "clickhouse_killed", path)
    if path == "backfill":
        cell.make_changes()
        dump = start_slow_dump(stack)
        with stack.frozen_clickhouse():
            wait_for_request_in_flight(stack)
            stack.clickhouse.kill()
        output = dump.communicate(timeout=PATIENCE)[0]
        assert dump.returncode != 0 and "--resume" in output, output
        stack.clickhouse.start()
        stack.dump("--object", "user_profile", "--resume")
        stack.dump()
    else:
        with stack.frozen_clickhouse():
            cell.make_changes()  # the learners' requests go on; the worker's insert waits at the frozen server
            wait_for_request_in_flight(stack)
            stack.clickhouse.kill()
        stack.clickhouse.start()
    cell.finish()


@BOTH
def test_clickhouse_slower_than_the_read_timeout(stack):
    """
    ClickHouse frozen longer than the client's read timeout (``read_timeout_secs``, 10 s here) on every path at
    once: the live drains and the xAPI drain (workers enough to hold every sink's batch at the same time) and a
    backfill give up; the frozen server then runs the inserts anyway, and the retries send them again.
    """
    live, backfill, xapi = (Cell(stack, "clickhouse_slow", path) for path in ("live", "backfill", "xapi"))
    backfill.make_changes()
    helpers = stack.devstack.start_worker(concurrency=4)  # no sink's batch waits behind another's timeout
    try:
        dump = start_slow_dump(stack)  # after the worker's start-up, which takes seconds on a loaded machine
        with stack.frozen_clickhouse():
            live.make_changes()
            xapi.make_changes()
            output = dump.communicate(timeout=PATIENCE)[0]  # the command gives up: ClickHouse timed out
            wait_until(
                lambda: stack.db.waited("aspects_sink_outboxentry") and stack.db.waited("aspects_sink_xapistatement"),
                "the drains giving their batches back after ClickHouse timed out",
            )
    finally:
        stack.devstack.stop_worker(helpers)
    assert dump.returncode != 0 and "--resume" in output, output
    stack.dump("--object", "user_profile", "--resume")
    stack.dump()
    for cell in (live, backfill, xapi):
        cell.finish(notes="frozen beyond the read timeout (10 s)")


# -- broker, cache, worker -------------------------------------------------------------------------------------------


@REDIS
@LIVE_AND_XAPI
def test_broker_killed(stack, path):
    cell = Cell(stack, "broker_killed", path)
    log, notes = stack.worker.log_path, ""
    logged_before = log.stat().st_size
    stack.broker.kill()
    try:
        cell.make_changes()  # wake-ups cannot be sent: the entries wait in the LMS database
    finally:
        stack.broker.start()  # same port, nothing persisted: queued tasks are gone too

    def worker_back_or_gone():
        if stack.worker.poll() is not None:
            return "gone"
        return "back" if b"Connected to" in log.read_bytes()[logged_before:] else None

    if wait_until(worker_back_or_gone, "the worker reconnecting to the broker (or exiting)") == "gone":
        # Celery 5.7 / kombu 5.7 may exit ("Unrecoverable error") when the broker dies while it holds unacknowledged
        # messages; its supervisor (Kubernetes, systemd) starts it again, as here.
        notes = "the worker exited with the broker (Celery's 'Unrecoverable error') and was started again"
        stack.devstack.workers.remove(stack.worker)
        stack.start_worker()
    cell.finish(notes=notes)  # beat's sweep wakes the drains


@REDIS
@LIVE_AND_XAPI
def test_cache_killed_during_learner_requests(stack, path):
    cell = Cell(stack, "cache_killed", path)
    stack.cache.kill()
    try:
        cell.make_changes()
        if path == "live":  # a profile save, too, after the commit's wake-up found no cache
            cell.act(stack.lms.call(scenarios.fault_profile_saves, prefix=cell.prefix, city="Nantes"))
    finally:
        stack.cache.start()
    cell.finish()


@BOTH
@LIVE_AND_XAPI
def test_worker_killed_mid_batch(stack, path):
    cell = Cell(stack, "worker_killed", path)
    try:
        with stack.frozen_clickhouse():
            cell.make_changes()
            wait_for_request_in_flight(stack)
            claimed = stack.db.claimed()
            stack.kill_worker()  # mid-batch: its entries are leased, its insert unanswered
        assert claimed > 0
        stack.lms.call(scenarios.lapse_leases)  # five minutes later, as far as the leases are concerned
    finally:
        if stack.worker is None:
            stack.start_worker()
    cell.finish(notes=f"{claimed} entries were leased by the killed worker")


# -- the same batch twice, a rejected row ----------------------------------------------------------------------------


@contextlib.contextmanager
def merges_stopped(client, tables):
    """No background merge collapses the tables' duplicates while the scenario counts them before ``FINAL``."""
    for table in tables:
        client.command(f"SYSTEM STOP MERGES {table}")
    try:
        yield
    finally:
        for table in tables:
            client.command(f"SYSTEM START MERGES {table}")


@BOTH
@ALL_PATHS
def test_the_same_batch_delivered_twice(stack, path):
    cell = Cell(stack, "delivered_twice", path)
    sinks = ("xapi_statements",) if path == "xapi" else ("user_profile", "external_id", "course_enrollment")
    tables = [_table(path)] if path == "xapi" else [f"event_sink.{sink}" for sink in sinks]
    with merges_stopped(stack.client(), tables):
        if path == "backfill":
            cell.make_changes()
            stack.dump()
            stack.dump("--force")
            notes = "the backfill run twice (--force)"
        else:
            stack.stop_worker()  # nobody else drains while the batch is inserted without acknowledgement
            try:
                cell.make_changes()
                delivered = [
                    stack.lms.call(scenarios.deliver_without_acknowledging, sink=sink)["delivered"] for sink in sinks
                ]
            finally:
                stack.start_worker()
            notes = f"{sum(delivered)} entries inserted, not acknowledged, then drained again"
        outcome = cell.finish(notes)
    assert outcome.raw > outcome.found  # each row was indeed inserted twice


@BOTH
@ALL_PATHS
def test_one_row_rejected(stack, path):
    cell = Cell(stack, "row_rejected", path)
    admin, table = stack.client(), _table(path)
    poison, constraint = f"Atlantis {cell.prefix}", f"no_atlantis_{cell.prefix}"  # this scenario's rows only
    condition = f"position(event, '{poison}') = 0" if path == "xapi" else f"city != '{poison}'"
    admin.command(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK {condition}")
    try:
        if path == "xapi":  # the first learner's answer: that one statement is rejected, and parked
            cell.make_changes(poison=poison)
            wait_until(stack.db.dead_statements, "the rejected statement parked")
        else:
            cell.make_changes(count=LEARNERS - 1)
            cell.make_changes(count=1, first=LEARNERS - 1, city=poison)
        if path == "backfill":
            failed = stack.dump("--object", "user_profile", check=False)
            output = failed.stdout + failed.stderr
            assert failed.returncode != 0 and "some objects failed (user_profile 1)" in output, output
        elif path == "live":
            parked = wait_until(
                lambda: {(row[0], row[1]) for row in stack.db.dead_letters() if constraint in row[2]},
                "the rejected profile parked",
            )
            assert [sink for sink, _ in parked] == ["user_profile"], parked
    finally:
        admin.command(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    if path == "backfill":
        stack.dump()
    else:
        replayed = stack.devstack.manage("lms", "aspects_sink_dead_letters", "--replay").stdout
        assert "dead letters queued again" in replayed, replayed
    cell.finish()


# -- configuration: table, column, grant -----------------------------------------------------------------------------


def _configuration_fault(stack, scenario: str, path: str, break_it, fix_it) -> None:
    cell = Cell(stack, scenario, path)
    sink = "xapi_statements" if path == "xapi" else "user_profile"
    if path == "backfill":
        cell.make_changes()
        break_it()
        try:
            failed = stack.dump("--object", "user_profile", check=False)
        finally:
            fix_it()
        assert failed.returncode != 0 and "--resume" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
        stack.dump("--object", "user_profile", "--resume")
        stack.dump()
        cell.finish()
        return
    break_it()
    try:
        cell.make_changes()
        error = wait_until(lambda: stack.db.paused(sink), f"{sink} paused by the configuration error")
    finally:
        fix_it()
    cell.finish(notes=f"paused: {error[:80]}")


def _table(path: str) -> str:
    return "xapi.xapi_events_all" if path == "xapi" else "event_sink.user_profile"


@BOTH
@ALL_PATHS
def test_table_renamed_then_renamed_back(stack, path):
    admin, table = stack.client(), _table(path)
    _configuration_fault(
        stack,
        "table_renamed",
        path,
        lambda: admin.command(f"RENAME TABLE {table} TO {table}_away"),
        lambda: admin.command(f"RENAME TABLE {table}_away TO {table}"),
    )


@BOTH
@ALL_PATHS
def test_column_missing_then_added_back(stack, path):
    admin, table = stack.client(), _table(path)
    column, definition = ("emission_time", "DateTime64(6, 'UTC')") if path == "xapi" else ("bio", "String")
    # The xAPI table's key needs emission_time: the statement's JSON, which no key holds, goes instead.
    column, definition = ("event", "String") if path == "xapi" else (column, definition)
    _configuration_fault(
        stack,
        "column_missing",
        path,
        lambda: admin.command(f"ALTER TABLE {table} DROP COLUMN {column}"),
        lambda: admin.command(f"ALTER TABLE {table} ADD COLUMN {column} {definition}"),
    )


@BOTH
@ALL_PATHS
def test_permission_revoked_then_granted(stack, path):
    user = stack.clickhouse.grants["ch_lms"]
    database, granted = "xapi" if path == "xapi" else "event_sink", dict(user["grants"])

    def revoke():
        user["grants"] = {**granted, database: [privilege for privilege in granted[database] if privilege != "INSERT"]}
        stack.clickhouse.restart()

    def grant():
        user["grants"] = granted
        stack.clickhouse.restart()

    _configuration_fault(stack, "permission_revoked", path, revoke, grant)


# -- transactions, the backfill, courses -----------------------------------------------------------------------------


@BOTH
@LIVE_AND_XAPI
def test_rolled_back_transactions_send_nothing(stack, path):
    cell = Cell(stack, "rolled_back", path)
    if path == "xapi":
        cell.make_changes(rolled_back=True)
    else:
        cell.make_changes(rolled_back=3)
    cell.finish(notes="rolled-back changes are counted as changes and expected nowhere")


@BOTH
def test_backfill_killed_and_resumed(stack):
    cell = Cell(stack, "backfill_killed", "backfill")
    cell.make_changes(count=12)
    # Seconds between batches of two: the run is killed long before it could finish, however slow the machine.
    dump = start_slow_dump(stack)
    dump.kill()  # a killed pod: no clean-up of any kind
    dump.wait()
    assert "to go" in stack.dump("--object", "user_profile", "--resume").stdout
    stack.dump()
    cell.finish()


@BOTH
@pytest.mark.parametrize("path", ["live", "backfill"])
def test_a_course_that_fails_to_serialize_among_good_ones(stack, path):
    cell = Cell(stack, "course_unserializable", path)
    history = path == "backfill"  # published before the plugin was installed: only the backfill sends them
    good = cell.act(stack.cms.call(scenarios.fault_courses, prefix=cell.prefix, count=3, history=history))["courses"]
    broken = f"course-v1:Fault+{cell.prefix}B+2026"
    stack.cms.call(scenarios.publish_broken_course, course=broken, history=history)
    cell.changes += 1
    try:
        if path == "backfill":
            failed = stack.dump("--object", "course_overviews", check=False)
            output = failed.stdout + failed.stderr
            assert failed.returncode != 0 and broken in output and "course_overviews 1" in output, output
        else:
            wait_until(lambda: [row for row in stack.db.dead_letters() if row[1] == broken], "the course parked")
    finally:
        # fixed: published again, whole (the dead letter stays, naming the old failure)
        org, course, run = broken.removeprefix("course-v1:").split("+")
        stack.cms.call(scenarios.publish_course, org=org, course=course, run=run, display_name="Fixed", blocks=20)
    if path == "backfill":
        stack.dump("--object", "course_overviews")
    courses = [*good, broken]
    expected = stack.cms.call(scenarios.course_snapshot, courses=courses)
    client = stack.client()
    cell.finish(
        notes="the broken course named in the run's errors (backfill) or its dead letter (live)",
        count=stack.settle(lambda: course_count(client, expected, courses)),
    )


# -- hostile input ---------------------------------------------------------------------------------------------------


@BOTH
@ALL_PATHS
def test_hostile_text_in_every_text_column(stack, path):
    cell = Cell(stack, "hostile_text", path)
    if path == "xapi":
        cell.make_changes(learners=9, hostile=True)  # one answer each: the texts, a lone surrogate, 100 KB
    else:
        cell.make_changes(count=8, hostile=True)
        if path == "backfill":
            stack.dump()
    cell.finish()


@BOTH
@pytest.mark.parametrize("path", ["live", "backfill"])
def test_nulls_edge_dates_and_odd_course_keys(stack, path):
    """Learners with NULL in every nullable field and edge dates, enrolled in courses with odd keys and edge dates."""
    cell = Cell(stack, "nulls_and_edge_dates", path)
    published = cell.act(
        stack.cms.call(
            scenarios.fault_courses, prefix=cell.prefix, count=0, blocks=8, hostile=True, history=path == "backfill"
        )
    )
    courses = published["courses"]
    counters = []
    for course in courses:
        cell.course, cell.prefix = course, new_prefix()
        cell.make_changes(count=4, hostile=True)  # the second learner of each course: NULL in every nullable field
        counters.append(cell.counter())
    if path == "backfill":
        stack.dump()
    expected = stack.cms.call(scenarios.course_snapshot, courses=courses)
    client = stack.client()
    total = stack.settle(lambda: sum((count() for count in counters), course_count(client, expected, courses)))
    cell.finish(notes="courses " + ", ".join(courses), count=total)


@SQLITE
@pytest.mark.parametrize(
    ("scenario", "options"),
    [
        ("big_course", {"count": 1, "blocks": 20_000}),
        ("deep_course", {"count": 0, "depth": 500}),
    ],
)
def test_a_big_and_a_deep_course(stack, scenario, options):
    started, prefix = time.monotonic(), new_prefix()
    published = stack.cms.call(scenarios.fault_courses, prefix=prefix, **options)
    expected = stack.cms.call(scenarios.course_snapshot, courses=published["courses"])
    client = stack.client()
    result = stack.settle(lambda: course_count(client, expected, published["courses"]))
    stack.finish(
        scenario,
        "live",
        changes=published["changes"],
        count=result,
        failed=published["failed"],
        seconds=time.monotonic() - started,
    )
