"""
Operators' commands given impossible input answer with one line naming it (a usage error), never a traceback
and never a run that does nothing and exits 0.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aspects_sink.xapi.sources import SourceError
from aspects_sink.xapi.sources import source_from_erb_options as erb_source


def error_of(*arguments: str) -> str:
    with pytest.raises(CommandError) as raised:
        call_command(*arguments, stdout=io.StringIO(), stderr=io.StringIO())
    return str(raised.value)


@pytest.mark.django_db
def test_dead_letters_of_no_such_sink_or_a_negative_limit_are_named():
    assert "--limit must be at least 1" in error_of("aspects_sink_dead_letters", "--limit", "-1")
    assert "no sink or queue named user_profle" in error_of(
        "aspects_sink_dead_letters", "--sink", "user_profle", "--replay"
    )


def test_a_history_day_that_is_no_day_is_named():
    assert "not a day (YYYY-MM-DD): 2024-13-01" in error_of(
        "aspects_sink_xapi_history", "/logs", "--from-date", "2024-13-01"
    )


def test_a_source_config_that_is_no_json_object_is_named():
    with pytest.raises(SourceError, match="is not a JSON object"):
        erb_source("S3", '["x"]')


def test_a_database_name_the_schema_cannot_take_is_named():
    assert "not a plain ClickHouse identifier: 'my db'" in error_of(
        "aspects_sink_schema", "--print", "--database", "my db"
    )


@pytest.mark.django_db
def test_a_discarded_dead_statement_is_logged_without_what_it_holds(client, caplog):
    """A dead xAPI entry holds the whole tracking event (username, IP address): the discard logs what and why."""
    from django.contrib.auth.models import User

    from aspects_sink.models import XapiStatement

    entry = XapiStatement.objects.create(
        event_name="problem_check",
        emission_time="2026-12-01T00:00:00Z",
        statement='{"username": "ada", "ip": "203.0.113.7"}',
        state=XapiStatement.DEAD,
        last_error="TransformationError: problem_check event of 2026-12-01: boom",
    )
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    with caplog.at_level("WARNING", logger="aspects_sink"):
        response = client.post(
            "/admin/aspects_sink/deadxapistatement/",
            {"action": "discard_dead", "_selected_action": [entry.pk]},
        )
    assert response.status_code == 302 and not XapiStatement.objects.exists()
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert f"id {entry.pk}, problem_check" in logged and "ada" not in logged and "203.0.113.7" not in logged
