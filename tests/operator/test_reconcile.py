"""
Reconciliation proves nothing was lost: rows deleted or altered by hand in ClickHouse are found among many, and
``--repair`` sends exactly those objects again (extra rows are deleted), after which both sides agree.
"""

from __future__ import annotations

import io

import pytest
from aspects_schema import ASPECTS_TABLES, create_aspects_tables
from django.core.management import call_command

from aspects_sink import delivery
from aspects_sink import reconcile as reconcile_module
from aspects_sink.models import OutboxEntry
from tests.operator.conftest import PASSWORD, USER
from tests.support.endpoints import point_plugin_at

USERS = 20_000


def reconcile(*arguments: str) -> tuple[int, str]:
    output = io.StringIO()
    try:
        call_command("aspects_sink_reconcile", "--no-progress", *arguments, stdout=output)
    except SystemExit as exit_:
        return int(exit_.code), output.getvalue()
    return 0, output.getvalue()


def line_of(output: str, sink: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.startswith(sink + " "))


@pytest.mark.slow
def test_reconcile_finds_deleted_altered_and_extra_rows_and_repairs_them(operator_clickhouse, seeder):
    seeder.users(USERS)
    call_command("dump_data_to_clickhouse", "--object", "user_profile", "--no-progress", stdout=io.StringIO())
    code, output = reconcile("--object", "user_profile")
    assert code == 0, output
    assert line_of(output, "user_profile")[1:3] == [f"{USERS:,}", f"{USERS:,}"]

    ids = [row[0] for row in operator_clickhouse.query("SELECT id FROM user_profile FINAL ORDER BY id").result_rows]
    deleted, altered = [*ids[100:107], ids[-1]], [*ids[5000:5003], ids[0]]
    sync = {"mutations_sync": 1}
    operator_clickhouse.command(f"ALTER TABLE user_profile DELETE WHERE id IN {tuple(deleted)}", settings=sync)
    operator_clickhouse.command(
        f"ALTER TABLE user_profile UPDATE city = 'Atlantis' WHERE id IN {tuple(altered)}", settings=sync
    )
    extra_id = ids[-1] + 1000  # a profile ClickHouse has and the LMS does not
    operator_clickhouse.command(
        f"INSERT INTO user_profile (id, user_id, name, version) VALUES ({extra_id}, {extra_id}, 'ghost', 1)"
    )

    code, output = reconcile("--object", "user_profile")
    assert code == 1
    columns = line_of(output, "user_profile")
    # object, LMS rows, ClickHouse rows, differing/ranges, "differ", missing, stale, extra
    assert columns[5:8] == [str(len(deleted)), str(len(altered)), "1"], output
    assert not OutboxEntry.objects.exists()  # without --repair nothing is queued

    code, output = reconcile("--object", "user_profile", "--repair")
    assert code == 0
    profiles = {
        int(user_id) for user_id in OutboxEntry.objects.filter(sink="user_profile").values_list("object_id", flat=True)
    }
    user_of = dict(operator_clickhouse.query("SELECT id, user_id FROM user_profile").result_rows)
    assert len(profiles) == len(deleted) + len(altered)  # exactly those objects, each once
    assert {user_of.get(i) for i in altered} <= profiles
    assert operator_clickhouse.command(f"SELECT count() FROM user_profile FINAL WHERE id = {extra_id}") == 0

    # While the drains have not sent them, the queued objects are in flight, not differences.
    code, output = reconcile("--object", "user_profile")
    assert line_of(output, "user_profile")[5:9] == ["0", "0", "0", str(len(profiles))]

    delivery.drain("user_profile", time_budget=float("inf"))
    code, output = reconcile("--object", "user_profile")
    assert code == 0, output
    assert line_of(output, "user_profile")[1:3] == [f"{USERS:,}", f"{USERS:,}"]
    assert operator_clickhouse.command("SELECT count() FROM user_profile FINAL WHERE city = 'Atlantis'") == 0


def seed_and_dump(seeder, users: int, enrollments: int) -> None:
    """Learners with profiles and external ids, three courses, enrollments, all dumped to ClickHouse."""
    seeder.users(users)
    seeder.courses(3, blocks_per_course=5)
    seeder.external_ids()
    seeder.enrollments(enrollments)
    call_command("dump_data_to_clickhouse", "--no-progress", stdout=io.StringIO())


def test_reconcile_compares_enrollments_and_courses_by_their_own_keys(operator_clickhouse, seeder):
    seed_and_dump(seeder, users=300, enrollments=500)
    code, output = reconcile("--range-size", "97")
    assert code == 0, output

    # One enrollment row too many for a learner who has others, and a course ClickHouse lost.
    user_id, _ = operator_clickhouse.query(
        "SELECT user_id, any(course_key) FROM course_enrollment FINAL GROUP BY user_id HAVING count() > 1 LIMIT 1"
    ).result_rows[0]
    operator_clickhouse.command(
        f"INSERT INTO course_enrollment (id, course_key, user_id, mode, version) "
        f"VALUES (999999, 'course-v1:Ghost+G+1', {user_id}, 'audit', 1)"
    )
    lost_course = operator_clickhouse.command("SELECT min(course_key) FROM course_overviews FINAL")
    operator_clickhouse.command(
        "ALTER TABLE course_overviews DELETE WHERE course_key = {c:String}",
        parameters={"c": lost_course},
        settings={"mutations_sync": 1},
    )
    code, output = reconcile("--range-size", "97")
    assert code == 1
    assert line_of(output, "course_enrollment")[5:8] == ["0", "1", "0"], output
    assert line_of(output, "course_overviews")[5:8] == ["1", "0", "0"], output
    assert f"course_overviews missing: {lost_course}" in output

    code, output = reconcile("--range-size", "97", "--repair")
    assert set(OutboxEntry.objects.values_list("sink", "object_id")) == {
        ("course_enrollment", str(user_id)),
        ("course_overviews", lost_course),
    }
    for sink in ("course_enrollment", "course_overviews"):
        delivery.drain(sink, time_budget=float("inf"))
    code, output = reconcile("--range-size", "97")
    assert code == 0, output


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--range-size", "0"], "--range-size must be at least 1"),
        (["--object", "user_profile", "--repair"], "user_profile is switched off"),  # PII off: it sends nothing
    ],
)
def test_options_that_cannot_do_what_they_say_are_usage_errors(operator_clickhouse, settings, arguments, complaint):
    from django.core.management.base import CommandError

    settings.ASPECTS_ENABLE_PII = False
    with pytest.raises(CommandError, match=complaint):
        call_command("aspects_sink_reconcile", "--no-progress", *arguments, stdout=io.StringIO())


ASPECTS_DATABASE = "event_sink_aspects_own"


@pytest.fixture
def aspects_own_tables(clickhouse_endpoint, clickhouse_client, settings, db):
    """
    The plugin pointed at tables Aspects' migrations created, as on a site that switched: plain MergeTree
    (course_overviews, course_enrollment, where ClickHouse refuses FINAL) or ReplacingMergeTree keyed with
    ``time_last_dumped`` (user_profile, external_id), no ``version``; Aspects' readers take an object's row of the
    greatest ``time_last_dumped``.
    """
    create_aspects_tables(clickhouse_client, ASPECTS_DATABASE)
    point_plugin_at(
        settings,
        clickhouse_client,
        clickhouse_endpoint,
        user=USER,
        password=PASSWORD,
        database=ASPECTS_DATABASE,
        tables=tuple(ASPECTS_TABLES),
    )
    return clickhouse_client


def test_reconcile_reads_aspects_own_tables_as_aspects_reads_them(aspects_own_tables, seeder):
    seed_and_dump(seeder, users=200, enrollments=300)
    call_command("dump_data_to_clickhouse", "--force", "--no-progress", stdout=io.StringIO())  # a row more each
    code, output = reconcile("--range-size", "97")
    assert code == 0, output
    assert line_of(output, "user_profile")[1:3] == ["200", "200"], output

    # A newer row of one profile, as Aspects' readers would take it: that profile differs.
    profile = f"{ASPECTS_DATABASE}.user_profile"
    user_id = aspects_own_tables.command(f"SELECT min(user_id) FROM {profile}")
    aspects_own_tables.command(
        f"INSERT INTO {profile} (id, user_id, name, time_last_dumped) "
        f"SELECT id, user_id, 'Someone Else', '9999-12-31 00:00:00' FROM {profile} WHERE user_id = {user_id} LIMIT 1"
    )
    code, output = reconcile("--object", "user_profile")
    assert code == 1
    assert line_of(output, "user_profile")[5:8] == ["0", "1", "0"], output


def test_ranges_summed_by_groups_find_differences_at_every_boundary(operator_clickhouse, seeder, monkeypatch):
    """ClickHouse sums a group of ranges per query; rows on the bounds of ranges and of groups land in their own."""
    monkeypatch.setattr(reconcile_module, "RANGES_PER_QUERY", 3)
    seeder.users(1000)
    call_command("dump_data_to_clickhouse", "--object", "user_profile", "--no-progress", stdout=io.StringIO())
    code, output = reconcile("--object", "user_profile", "--range-size", "50")
    assert code == 0, output
    assert line_of(output, "user_profile")[1:4] == ["1,000", "1,000", "0/21"]  # the last one open, empty

    ids = [row[0] for row in operator_clickhouse.query("SELECT id FROM user_profile FINAL ORDER BY id").result_rows]
    # First and last rows of ranges and of groups of ranges (3 ranges of 50 rows), and the table's ends.
    altered = [ids[0], ids[49], ids[50], ids[149], ids[150], ids[151], ids[-1]]
    operator_clickhouse.command(
        f"ALTER TABLE user_profile UPDATE city = 'Atlantis' WHERE id IN {tuple(altered)}",
        settings={"mutations_sync": 1},
    )
    for extra_id in (ids[0] - 1, ids[-1] + 1):  # below the first range, above the last one
        operator_clickhouse.command(
            f"INSERT INTO user_profile (id, user_id, name, version) VALUES ({extra_id}, {extra_id + 10**6}, 'ghost', 1)"
        )
    code, output = reconcile("--object", "user_profile", "--range-size", "50")
    assert code == 1
    columns = line_of(output, "user_profile")
    assert columns[2:4] == ["1,002", "6/21"]  # ranges 0, 1, 2, 3 (a new group), 19 and the open one
    assert columns[5:8] == ["0", str(len(altered)), "2"], output


def test_repair_keeps_the_rows_of_an_object_made_while_it_compared(operator_clickhouse, seeder, monkeypatch):
    """
    A learner registers and is sent to ClickHouse after reconcile read the LMS's range and before it read
    ClickHouse's: the row is new, not extra, and --repair leaves it.
    """
    from common.djangoapps.student.helpers import create_user

    seeder.users(20)
    call_command("dump_data_to_clickhouse", "--object", "user_profile", "--no-progress", stdout=io.StringIO())
    first = operator_clickhouse.command("SELECT min(id) FROM user_profile")
    operator_clickhouse.command(f"ALTER TABLE user_profile DELETE WHERE id = {first}", settings={"mutations_sync": 1})
    read_clickhouse = reconcile_module.SinkComparison.clickhouse_rows
    made = []

    def a_learner_registers_meanwhile(comparison, *args, **kwargs):
        if not made:
            made.append(create_user("meanwhile", "meanwhile@example.com", name="Meanwhile").profile.id)
            delivery.drain("user_profile", time_budget=float("inf"))
        return read_clickhouse(comparison, *args, **kwargs)

    monkeypatch.setattr(reconcile_module.SinkComparison, "clickhouse_rows", a_learner_registers_meanwhile)

    reconcile("--object", "user_profile", "--repair")

    assert operator_clickhouse.command(f"SELECT count() FROM user_profile WHERE id = {made[0]}") == 1
