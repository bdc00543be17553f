"""
A lone surrogate in an event's text (which UTF-8 cannot carry) no longer stops the history import: the statement
is stored with JSON escapes, as the live route stores it. A line the import cannot read at all is reported by
file and line with the reason; the other events go in, the summary and the exit code say so, and ``--resume``
carries on past it.
"""

from __future__ import annotations

import json
import uuid

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.management import CommandError, call_command
from django.db import connection
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from xmodule.modulestore.course_builder import create_course

from tests.support.xapi import raw_rows


@pytest.fixture
def tracking_log(db, tmp_path):
    """
    A learner's round of five events as a tracking log; the fourth (problem_check) holds a lone surrogate, and a
    sixth line was cut short (not JSON).
    """
    course = activity.CourseBlocks.of(create_course("BadX", "Surrogate", "2026", "Bad events", blocks=60))
    learner = create_user("surrogate", "surrogate@example.com", name="Surrogate")
    with activity.recording() as events:
        activity.emit(learner, course, activity.round_of_events(learner, course))
    lines = [json.loads(activity.tracking_log_line(event)) for event in events]
    assert lines[3]["name"] == activity.PROBLEM_CHECK
    for submission in lines[3]["event"]["submission"].values():
        submission["answer"] = "\ud800"
    path = tmp_path / "tracking.log"
    text = "".join(json.dumps(line) + "\n" for line in lines)  # \ud800 escaped
    path.write_text(text + json.dumps(lines[0])[:40] + "\n", encoding="ascii")
    return path


def test_a_lone_surrogate_goes_in_and_an_unreadable_line_is_reported(devstack_clickhouse, tracking_log, capsys):
    with pytest.raises(CommandError, match="1 event could not be imported"):
        call_command("aspects_sink_xapi_history", str(tracking_log), "--no-progress")
    output = capsys.readouterr()
    assert f"{tracking_log} line 6" in output.out + output.err
    assert raw_rows(devstack_clickhouse) == 5  # the surrogate's statement included

    call_command("aspects_sink_xapi_history", str(tracking_log), "--no-progress", "--resume")  # past it, quietly
    assert raw_rows(devstack_clickhouse) == 5


@pytest.fixture
def hostile_log(tracking_log):
    """
    The learner's five events, then lines a browser or a broken logger can leave: JSON without an event name, a
    name that is a list, and an ``event`` string nested deeper than Python's JSON parser goes.
    """
    good = tracking_log.read_text(encoding="ascii").splitlines()[:5]
    template = json.loads(good[0])
    nameless = {key: value for key, value in template.items() if key != "name"}
    listed = {**template, "name": [template["name"]]}
    nested = {**template, "name": "problem_check", "event": "[" * 5000 + "]" * 5000}
    tracking_log.write_text("\n".join([*good, *(json.dumps(line) for line in (nameless, listed, nested))]) + "\n")
    return tracking_log


def test_events_erbs_parser_or_allow_list_choke_on_are_reported_and_the_rest_goes_in(
    devstack_clickhouse, hostile_log, capsys
):
    call_command("aspects_sink_xapi_history", str(hostile_log), "--dry-run")
    assert "8 lines" in capsys.readouterr().out

    with pytest.raises(CommandError, match="3 events could not be imported"):
        call_command("aspects_sink_xapi_history", str(hostile_log), "--no-progress")
    output = capsys.readouterr()
    for line in (6, 7, 8):
        assert f"{hostile_log} line {line}" in output.err
    assert raw_rows(devstack_clickhouse) == 5


def test_the_lms_database_failing_stops_the_import_for_a_resume_and_blames_no_event(devstack_clickhouse, db, tmp_path):
    course = activity.CourseBlocks.of(create_course("LookupX", uuid.uuid4().hex[:8], "2026", "Lookups", blocks=60))
    learner = create_user(f"lookup-{uuid.uuid4().hex[:8]}", "lookup@example.com")  # in no lookup's memo yet
    with activity.recording() as events:
        activity.emit(learner, course, activity.round_of_events(learner, course))
    log = tmp_path / "tracking.log"
    log.write_text("".join(activity.tracking_log_line(event) + "\n" for event in events))
    table = ExternalId._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")  # ERB's anonymous-id lookup fails
    try:
        with pytest.raises(CommandError, match=r"the LMS database failed .*Run again with --resume"):
            call_command("aspects_sink_xapi_history", str(log), "--no-progress")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")

    call_command("aspects_sink_xapi_history", str(log), "--no-progress", "--resume")
    assert raw_rows(devstack_clickhouse) == 5


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)], ids=["import", "dry-run"])
def test_an_import_with_erbs_circuit_breaker_off_says_so_instead_of_skipping_every_event(
    tracking_log, settings, dry_run
):
    settings.XAPI_EVENTS_ENABLED = False
    with pytest.raises(CommandError, match=r"XAPI_EVENTS_ENABLED is off: it would make no statement$"):
        call_command("aspects_sink_xapi_history", str(tracking_log), "--no-progress", *dry_run)


def test_a_line_longer_than_any_event_is_reported_not_held_in_memory(devstack_clickhouse, tracking_log, capsys):
    """Something that is no log under the prefix (17 MiB without a newline) is one unreadable line, skipped."""
    good = tracking_log.read_text(encoding="ascii").splitlines()[:5]
    with tracking_log.open("w", encoding="ascii") as log:
        log.write("\n".join(good[:2]) + "\n")
        for _ in range(17):
            log.write("x" * 2**20)
        log.write("\n" + "\n".join(good[2:]) + "\n")

    with pytest.raises(CommandError, match="1 event could not be imported"):
        call_command("aspects_sink_xapi_history", str(tracking_log), "--no-progress")
    output = capsys.readouterr()
    assert f"{tracking_log} line 3: ? event not imported: a line longer than 16 MiB" in output.err
    assert raw_rows(devstack_clickhouse) == 5
