"""
``aspects_sink_xapi_lrs`` keeps exactly one RouterConfiguration per LRS, however often a deployment runs it; ERB's
own commands that send to LRS routes say so when aspects-sink keeps none.
"""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.management import call_command
from event_routing_backends.models import RouterConfiguration
from xmodule.modulestore.course_builder import create_course

RALPH = ("--route_url", "http://ralph:8100/xAPI", "--username", "ralph")


def configure(*args: str) -> str:
    output = io.StringIO()
    call_command("aspects_sink_xapi_lrs", *args, stdout=output)
    return output.getvalue()


@pytest.mark.django_db
def test_running_it_twice_leaves_one_row():
    assert "created" in configure(*RALPH, "--password", "secret")
    assert "unchanged" in configure(*RALPH, "--password", "secret")

    router = RouterConfiguration.objects.get()
    assert (router.backend_name, router.route_url, router.auth_scheme) == ("xAPI", "http://ralph:8100/xAPI/", "Basic")
    assert (router.username, router.password, router.enabled) == ("ralph", "secret", True)


@pytest.mark.django_db
def test_new_credentials_update_the_row_in_place():
    configure(*RALPH, "--password", "secret")

    assert "updated" in configure(*RALPH, "--password", "rotated", "--disable")

    router = RouterConfiguration.objects.get()
    assert (router.password, router.enabled) == ("rotated", False)
    assert RouterConfiguration.get_enabled_routers("xAPI") is None


@pytest.mark.django_db
def test_erbs_history_command_to_lrs_says_that_no_lrs_route_receives_statements(tmp_path, caplog, capsys):
    """
    ERB's ``transform_tracking_logs --destination_provider LRS`` hands its batches to the xapi router, which sends
    to no LRS while aspects-sink routes statements to ClickHouse: the operator is told, and what to run instead.
    """
    course = activity.CourseBlocks.of(create_course("LogX", uuid.uuid4().hex[:8], "2026", "Logs", blocks=20))
    learner = create_user(f"log{uuid.uuid4().hex[:8]}", f"log{uuid.uuid4().hex[:6]}@example.com")
    with activity.recording() as events:
        activity.emit(learner, course, activity.round_of_events(learner, course))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "tracking.log").write_text("\n".join(map(activity.tracking_log_line, events)) + "\n")
    source = json.dumps({"key": str(tmp_path), "container": "logs", "prefix": ""})

    with caplog.at_level(logging.WARNING, logger="aspects_sink"):
        call_command(
            "transform_tracking_logs",
            "--source_provider", "LOCAL", "--source_config", source,
            "--destination_provider", "LRS", "--transformer_type", "xapi",
        )  # fmt: skip

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("no LRS route" in message and "aspects_sink_xapi_history" in message for message in warnings), warnings
