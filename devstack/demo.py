"""
``make demo``: aspects-sink doing its job on a laptop, with nothing to install by hand.

It starts the devstack ClickHouse endpoint, migrates a SQLite LMS, creates the ClickHouse schema,
starts a real Celery worker on the embedded broker, backfills seeded history, then acts as learners
and authors would (publish, register, edit profiles, enroll, change modes, retire) and ends by
comparing, sink by sink, what the LMS holds with what ClickHouse holds; learner activity becomes xAPI
statements in ClickHouse along the way. Everything stays under
``.devstack/demo`` for inspection; every process it started is stopped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from demo_xapi import count_statements, emit_learner_activity, statements_by_verb
from processes import REPO_ROOT, Devstack

DEMO_SETTINGS = {
    # The demo shows profiles too; production keeps personal data off unless the operator opts in.
    "ASPECTS_ENABLE_PII": True,
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 5,
}

LOADED = """
from django.apps import apps
from django.conf import settings
config = settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
result = {"installed": apps.is_installed("aspects_sink"), "url": config["url"], "database": config["database"]}
"""

LIVE_ACTIONS = """
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from openedx.core.djangoapps.user_api.accounts.api import retire_user
from opaque_keys.edx.keys import CourseKey

course = CourseKey.from_string(COURSE)
learners = [create_user(f"demo_learner{i}", f"demo{i}@example.com", name=f"Demo Learner {i}") for i in range(50)]
for learner in learners:
    ExternalId.add_new_user_id(learner, "xapi")
    CourseEnrollment.enroll(learner, course, "audit")
for learner in learners[:10]:
    profile = UserProfile.objects.get(user=learner)
    profile.city, profile.country = "Nairobi", "KE"
    profile.save()
    CourseEnrollment.objects.get(user=learner, course_id=course).change_mode("verified")
learners[10].username = "demo_renamed"
learners[10].save()
CourseEnrollment.unenroll(learners[11], course)
retire_user(learners[12])
result = len(learners)
"""

COMPARE = """
from aspects_sink.backfill import dumpable
from aspects_sink.sinks.registry import enabled_sinks
from xmodule.modulestore.django import modulestore
from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
result = {}
for sink in filter(dumpable, enabled_sinks()):
    for table in sink.tables():
        if table.name == "course_blocks":
            result[table.name] = sum(len(modulestore().get_items(c.id)) for c in CourseOverview.objects.all())
        else:
            result[table.name] = sink.queryset().count()
"""

PENDING = """
from aspects_sink.models import OutboxEntry
result = OutboxEntry.objects.filter(state="pending").count()
"""


def step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.monotonic()


def run(state_dir: Path, users: int, courses: int, enrollments: int) -> int:
    if state_dir.exists():
        shutil.rmtree(state_dir)
    devstack = Devstack(state_dir, settings=DEMO_SETTINGS)
    try:
        step("Starting ClickHouse (devstack endpoint over chDB), migrating the LMS (SQLite), creating the schema")
        devstack.start()
        print(f"    ClickHouse at {devstack.clickhouse.url}, state in {state_dir}")
        for service in ("lms", "cms"):
            loaded = devstack.run_python(service, LOADED)
            print(f"    {service}: aspects_sink loaded: {loaded['installed']}; writes to {loaded['url']}")
        step("Starting a Celery worker (embedded filesystem broker) with the beat sweep")
        devstack.start_worker(beat=True)

        step(f"Seeding history in bulk (no signals): {users} users, {courses} courses, {enrollments} enrollments")
        print(
            devstack.manage(
                "lms", "seed_devstack", "--users", str(users), "--courses", str(courses),
                "--blocks-per-course", "100", "--enrollments", str(enrollments), "--external-ids",
            ).stdout.strip()
        )  # fmt: skip
        step("Backfilling that history: dump_data_to_clickhouse")
        # --sleep_time 0: nothing else uses this database (the default rests 1 s between batches to spare a live one)
        dump = devstack.manage("lms", "dump_data_to_clickhouse", "--batch_size", "5000", "--sleep_time", "0")
        print(dump.stdout.rstrip())

        step("Live path: an author publishes a 1,000-block course in the CMS")
        course = devstack.run_python(
            "cms",
            "from xmodule.modulestore.course_builder import create_course\n"
            "result = str(create_course('DemoX', 'Analytics101', '2026', 'Analytics for everyone', blocks=1000))",
        )
        print(f"    published {course}")
        step("Live path: learners register, edit profiles, enroll, change mode, unenroll; one account is retired")
        devstack.run_python("lms", LIVE_ACTIONS.replace("COURSE", repr(course)))

        step("Learner activity: tracking events through event-routing-backends become xAPI statements")
        learners = [f"demo_learner{i}" for i in range(20)]
        emitted = emit_learner_activity(devstack, course, learners, rounds=2)
        print(f"    {emitted} tracking events emitted by {len(learners)} learners")

        started = step("Waiting for the worker to drain the outbox")
        devstack.wait_for(
            lambda: devstack.run_python("lms", PENDING) == 0, timeout=120, interval=1, what="empty outbox"
        )
        print(f"    drained in {time.monotonic() - started:.1f}s")

        step("LMS vs ClickHouse, per table (ClickHouse counted with FINAL: one row per object)")
        expected = devstack.run_python("lms", COMPARE)
        client = devstack.clickhouse_client()
        mismatches = 0
        print(f"    {'table':<20}{'LMS':>10}{'ClickHouse':>12}")
        for table, lms_count in expected.items():
            ch_count = client.command(f"SELECT count() FROM {table} FINAL")
            mismatches += ch_count != lms_count
            print(f"    {table:<20}{lms_count:>10}{ch_count:>12}{'' if ch_count == lms_count else '   <-- differs'}")
        devstack.wait_for(lambda: count_statements(devstack) >= emitted, timeout=60, interval=1, what="xAPI statements")
        statements = count_statements(devstack)
        print(f"\n    xAPI statements in ClickHouse: {statements} ({emitted} from the learner activity above, the rest")
        print("    from the enrollments of the live path), by verb:")
        for verb, count in statements_by_verb(devstack).items():
            print(f"      {verb:<30}{count:>8}")
        step("Done" if not mismatches else f"{mismatches} tables differ")
        print(f"    State kept in {state_dir} (LMS database db.sqlite3, ClickHouse data in clickhouse/, worker logs).")
        return 1 if mismatches else 0
    finally:
        devstack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".devstack" / "demo")
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--courses", type=int, default=20)
    parser.add_argument("--enrollments", type=int, default=40000)
    options = parser.parse_args(argv)
    return run(options.state_dir, options.users, options.courses, options.enrollments)


if __name__ == "__main__":
    sys.exit(main())
