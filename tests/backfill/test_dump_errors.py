"""Bad input and bad days: each a one-line error and a non-zero exit, never a traceback or a silent loss."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from aspects_sink.models import DumpCheckpoint

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]


def error_of(dump, *arguments) -> str:
    with pytest.raises(CommandError) as raised:
        dump(*arguments)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_an_unknown_object_lists_the_valid_names(backfill_clickhouse, dump):
    message = error_of(dump, "--object", "user_profiles")

    assert "unknown object 'user_profiles'" in message
    assert "user_profile" in message
    assert "course_enrollment" in message


def test_user_retirement_is_not_dumpable(backfill_clickhouse, dump):
    assert "user_retirement cannot be dumped" in error_of(dump, "--object", "user_retirement")


def test_a_switched_off_sink_is_refused(backfill_clickhouse, dump, settings):
    settings.ASPECTS_ENABLE_PII = False

    assert "user_profile is switched off" in error_of(dump, "--object", "user_profile")


def test_malformed_ids_are_named(backfill_clickhouse, dump, learners):
    learners(1)

    assert (
        error_of(dump, "--object", "user_profile", "--ids", "1", "abc", "x2") == "malformed user_profile ids: abc, x2"
    )


def test_malformed_course_keys_are_named(backfill_clickhouse, dump):
    message = error_of(dump, "--object", "course_overviews", "--ids_to_skip", "not-a-course-key")

    assert message == "malformed course_overviews ids: not-a-course-key"


def test_missing_ids_are_named_and_nothing_is_sent(backfill_clickhouse, dump, learners):
    learners(2)

    message = error_of(dump, "--object", "user_profile", "--ids", "1", "98765", "98766")

    assert message == "no user_profile with id 98765, 98766"
    assert backfill_clickhouse.count("user_profile") == 0


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--limit", "0"], "--limit must be at least 1"),
        (["--limit", "-3"], "--limit must be at least 1"),
        (["--limit", "5", "--force"], "--limit cannot be used with --force"),
        (["--ids", "1", "--start_pk", "1"], "--ids and --start_pk cannot be used together"),
        (["--ids", "1", "--resume"], "--ids cannot be resumed"),
        (["--start_pk", "1", "--resume"], "leave out --start_pk"),
        (["--ids", "1", "--workers", "2"], "leave out --workers"),
        (["--limit", "5", "--workers", "2"], "--limit cannot be used with --workers"),
        (["--workers", "2", "--url", "http://elsewhere:8123"], "workers write to their own"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--sleep_time", "-1"], "--sleep_time cannot be negative"),
        (["--ids"], "--ids needs at least one key"),  # an empty list (ids from an empty file) is no selection
        (["--workers", "2", "--worker_timeout", "0"], "--worker_timeout must be above 0"),
        (["--workers", "2", "--sleep_time", "60"], "--sleep_time must be shorter than --worker_timeout"),
    ],
)
def test_conflicting_or_impossible_options_are_usage_errors(backfill_clickhouse, dump, arguments, complaint):
    assert complaint in error_of(dump, "--object", "user_profile", *arguments)


def test_keys_need_an_object(backfill_clickhouse, dump):
    assert "add --object" in error_of(dump, "--ids", "1")


@pytest.mark.timeout(120)  # fails only if the command keeps trying
def test_an_unreachable_server_fails_with_one_line(backfill_clickhouse, dump):
    message = error_of(dump, "--object", "user_profile", "--url", "http://127.0.0.1:9", "--timeout_secs", "2")

    assert message.startswith("cannot connect to ClickHouse at http://127.0.0.1:9")


def test_a_wrong_password_exits_non_zero_with_one_line_and_no_traceback(clickhouse_endpoint, tmp_path):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "devstack"), str(REPO_ROOT)]),
        "DEVSTACK_STATE_DIR": str(tmp_path),
        "ASPECTS_SINK_CLICKHOUSE_URL": clickhouse_endpoint.url,
        "ASPECTS_SINK_CLICKHOUSE_USERNAME": "backfill",
        "ASPECTS_SINK_CLICKHOUSE_PASSWORD": "not-the-password",
    }
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, str(REPO_ROOT / "devstack" / "manage.py"), "lms", "dump_data_to_clickhouse"]

    result = subprocess.run(
        [*command, "--object", "course_enrollment"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("CommandError: cannot connect to ClickHouse")
    assert "Authentication failed" in result.stderr


@pytest.fixture
def honor_mode_rejected(backfill_clickhouse):
    """A constraint on the ClickHouse table: rows in mode 'honor' are refused by the server."""
    table = "event_sink_backfill.course_enrollment"
    backfill_clickhouse.command(f"ALTER TABLE {table} ADD CONSTRAINT no_honor CHECK mode != 'honor'")
    yield
    backfill_clickhouse.command(f"ALTER TABLE {table} DROP CONSTRAINT no_honor")


def test_rows_clickhouse_rejects_are_counted_as_failed_and_the_rest_arrive(
    backfill_clickhouse, dump, enrollments, honor_mode_rejected
):
    enrolled = enrollments(6)
    enrolled[2].change_mode("honor")
    enrolled[4].change_mode("honor")

    with pytest.raises(CommandError, match=r"^some objects failed \(course_enrollment 2\)") as raised:
        dump("--object", "course_enrollment", "--batch_size", "4")

    assert "\n" not in str(raised.value)
    assert sorted(backfill_clickhouse.column("course_enrollment", "id")) == [
        enrollment.id for number, enrollment in enumerate(enrolled) if number not in (2, 4)
    ]
    checkpoint = DumpCheckpoint.objects.get(sink="course_enrollment")
    assert (checkpoint.rows, checkpoint.failed) == (4, 2)
    assert f"course_enrollment {enrolled[2].id}: " in checkpoint.last_error


def test_the_summary_and_the_failures_are_printed_before_the_error(
    backfill_clickhouse, enrollments, honor_mode_rejected
):
    enrolled = enrollments(2)
    enrolled[1].change_mode("honor")
    output = io.StringIO()

    with pytest.raises(CommandError):
        call_command("dump_data_to_clickhouse", "--object", "course_enrollment", "--sleep_time", "0", stdout=output)

    printed = output.getvalue()
    assert "object             rows  skipped  failed  seconds  rows/s" in printed
    assert f"course_enrollment: course_enrollment {enrolled[1].id}: " in printed
    assert "VIOLATED_CONSTRAINT" in printed


def test_the_lms_database_failing_mid_run_is_one_line_with_the_summary(backfill_clickhouse, dump, learners, capsys):
    """The LMS database fails while the dump reads it (here, its table gone): a line, the summary, --resume."""
    from django.db import connection

    learners(3)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE auth_userprofile RENAME TO auth_userprofile_away")
    try:
        message = error_of(dump, "--object", "user_profile")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE auth_userprofile_away RENAME TO auth_userprofile")

    assert message.startswith("user_profile: the LMS database failed: ")
    assert "auth_userprofile" in message and message.endswith("Run again with --resume to continue.")
    dump("--object", "user_profile", "--resume")
    assert backfill_clickhouse.count("user_profile") == 3


def test_a_stopped_run_of_chosen_ids_is_not_told_to_resume(backfill_clickhouse, dump, learners, monkeypatch):
    """--ids runs keep no checkpoints: the advice is to run them again."""
    from aspects_sink.transport import ClickHouseTransport, ClickHouseUnavailable

    (learner,) = learners(1)

    def clickhouse_gone(self, batch, settings=None):
        raise ClickHouseUnavailable("Connection refused")

    monkeypatch.setattr(ClickHouseTransport, "insert", clickhouse_gone)
    message = error_of(dump, "--object", "user_profile", "--ids", str(learner.profile.id))

    assert "--resume" not in message and message.endswith("Run the same command again.")
