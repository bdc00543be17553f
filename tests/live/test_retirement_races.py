"""
Retirement that sticks, proven in real processes: the retirement pipeline's steps (``retire_misc``, a profile
save, ``retire``) run as separate LMS processes, each its own transaction, while a backfill process and a drain
process run at the same time and a Celery worker drains live; rounds in a random order. Then no table holds a
row or a personal value of a retired user, and ``aspects_sink_retirement_check`` agrees. SQLite with the
embedded broker, and MariaDB with Redis.
"""

from __future__ import annotations

import random
import threading

import pytest

from tests.support import scenarios
from tests.support.devstacks import drop_mysql_database, make_devstack, wait_until_drained
from tests.support.services import require_service

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini

COURSE = "course-v1:RaceX+Retire+2026"
LEARNERS = 8
ROUNDS = 2
RETIRED_PER_ROUND = 3


@pytest.fixture(scope="module", params=[{"database": "sqlite"}, {"database": "mysql", "broker": "redis"}], ids=[
    "sqlite-embedded-broker", "mariadb-redis"])  # fmt: skip
def devstack(request, tmp_path_factory):
    options = dict(request.param)
    broker_url = None
    if options.pop("broker", None) == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        broker_url = f"redis://127.0.0.1:6379/{random.SystemRandom().randint(1, 15)}"
    devstack = make_devstack(tmp_path_factory, "retire", broker_url=broker_url, **options)
    devstack.start_worker(beat=True)
    yield devstack
    devstack.stop()
    drop_mysql_database(devstack)


def _concurrently(*steps) -> None:
    """Run each step (a list of calls) in a thread of its own; each call starts an LMS process."""
    errors = []

    def run(calls):
        try:
            for call in calls:
                call()
        except Exception as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(calls,)) for calls in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_retirement_sticks_under_concurrent_drains_and_backfills(devstack):
    rng = random.Random()  # pytest-randomly seeds it: the interleaving is replayable with -p randomly -p seed
    ids = devstack.run_function("lms", scenarios.enroll_learners, prefix="racer", count=LEARNERS, course=COURSE)
    wait_until_drained(devstack)
    usernames = [f"racer{number}" for number in range(LEARNERS)]
    order = rng.sample(range(LEARNERS), ROUNDS * RETIRED_PER_ROUND)
    for round_number in range(ROUNDS):
        retiring = [
            usernames[i] for i in order[round_number * RETIRED_PER_ROUND : (round_number + 1) * RETIRED_PER_ROUND]
        ]
        # Each step of the pipeline is a process of its own, one transaction per learner (a request each).
        pipeline = [
            lambda r=retiring: devstack.run_function("lms", scenarios.retire_misc, usernames=r),
            lambda r=retiring: devstack.run_function("lms", scenarios.save_profile, usernames=r, city="Paris"),
            lambda r=retiring: devstack.run_function("lms", scenarios.retire, usernames=r),
        ]
        backfill = [lambda: devstack.manage("lms", "dump_data_to_clickhouse", "--sleep_time", "0")]
        # Racing the others, a drain may have to retry entries (and say so with its exit code): it is not the point.
        drain = [lambda: devstack.manage("lms", "aspects_sink_sweep", "--drain", check=False)]
        steps = [pipeline, backfill, drain]
        rng.shuffle(steps)
        _concurrently(*steps)
    wait_until_drained(devstack)

    retired = devstack.run_function("lms", scenarios.retired_users)
    retired_names = [usernames[i] for i in order]
    assert sorted(retired) == sorted(ids[i] for i in order)
    ch = devstack.clickhouse_client()
    for table in ("user_profile", "external_id"):
        assert (
            ch.command(
                f"SELECT count() FROM {table} WHERE user_id IN {{ids:Array(Int64)}}", parameters={"ids": retired}
            )
            == 0
        ), table
    assert (
        ch.command(
            "SELECT count() FROM course_enrollment WHERE user_id IN {ids:Array(Int64)} AND username != ''",
            parameters={"ids": retired},
        )
        == 0
    )
    for table in ("user_profile", "external_id", "course_enrollment"):
        columns = [row[0] for row in ch.query(f"DESCRIBE TABLE {table}").result_rows]
        text = " || ' ' || ".join(f"toString(`{name}`)" for name in columns)
        for name in retired_names:
            for needle in (f"{name}@", f"{name}'", name.replace("racer", "racer ")):
                hits = ch.command(
                    f"SELECT count() FROM {table} WHERE position({text} || '''', {{needle:String}}) > 0",
                    parameters={"needle": needle},
                )
                assert hits == 0, f"{needle!r} still in {table}"
    kept = ch.command(
        "SELECT count() FROM user_profile FINAL WHERE user_id NOT IN {ids:Array(Int64)}", parameters={"ids": retired}
    )
    assert kept >= LEARNERS - len(retired)  # the others are all there
    check = devstack.manage("lms", "aspects_sink_retirement_check")
    assert f"No personal data of the {len(retired)} retired users" in check.stdout
