"""
Each drain and each backfill batch tells the APM its sink, rows, INSERTs, time and outcome through
edx-django-utils' ``set_custom_attribute`` (the telemetry backends of ``OPENEDX_TELEMETRY``), and each drain
writes one structured log line.
"""

from __future__ import annotations

import io
import logging

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from aspects_sink import delivery, outbox
from tests.support.telemetry import RecordingBackend


@pytest.fixture
def recorded(settings):
    settings.OPENEDX_TELEMETRY = ["tests.support.telemetry.RecordingBackend"]
    RecordingBackend.attributes = []
    return RecordingBackend.attributes


def batches(recorded) -> list[dict]:
    """The attributes grouped per batch (each batch starts with ``aspects_sink.kind``)."""
    found: list[dict] = []
    for key, value in recorded:
        if key == "aspects_sink.kind":
            found.append({})
        found[-1][key.removeprefix("aspects_sink.")] = value
    return found


def test_a_drain_sets_its_attributes_and_logs_one_line(operator_clickhouse, seeder, recorded, caplog):
    seeder.users(30)
    # Their own ids: a transactional test before this one on the same database leaves its sequences behind.
    outbox.enqueue("user_profile", User.objects.values_list("id", flat=True))
    with caplog.at_level(logging.INFO, logger="aspects_sink.apm"):
        report = delivery.drain("user_profile", time_budget=float("inf"))
    (drain,) = batches(recorded)
    assert drain["kind"] == "drain" and drain["sink"] == "user_profile" and drain["outcome"] == "ok"
    assert drain["rows"] == report.delivered == 30 and drain["inserts"] == 1 and drain["seconds"] >= 0
    (line,) = [record.getMessage() for record in caplog.records if record.name == "aspects_sink.apm"]
    assert line.startswith("aspects_sink drain sink=user_profile rows=30 inserts=1 ") and "outcome=ok" in line


def test_every_backfill_batch_sets_its_attributes(operator_clickhouse, seeder, recorded):
    seeder.users(25)
    call_command(
        "dump_data_to_clickhouse", "--object", "user_profile", "--batch_size", "10", "--no-progress",
        stdout=io.StringIO(),
    )  # fmt: skip
    found = [batch for batch in batches(recorded) if batch["kind"] == "backfill"]
    assert [batch["rows"] for batch in found] == [10, 10, 5]
    assert all(
        batch["sink"] == "user_profile" and batch["outcome"] == "ok" and batch["inserts"] == 1 for batch in found
    )
