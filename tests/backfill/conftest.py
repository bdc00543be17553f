"""
Fixtures for the backfill: a real ClickHouse (the devstack's chDB endpoint) holding aspects-sink's schema,
real platform objects made through the stand-in platform's own APIs, and a way to run the command.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import clickhouse_connect
import pytest
from clickhouse_endpoint import ClickHouseEndpoint
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import CourseEnrollment
from django.core.management import call_command
from xmodule.modulestore.course_builder import create_course

from aspects_sink.transport import ClickHouseTransport
from tests.support.endpoints import point_plugin_at

USER = "backfill"
PASSWORD = "backfill-secret"
DATABASE = "event_sink_backfill"
TABLES = ("course_overviews", "course_blocks", "user_profile", "external_id", "course_enrollment")


@pytest.fixture(scope="session")
def clickhouse_endpoint(tmp_path_factory):
    with ClickHouseEndpoint(tmp_path_factory.mktemp("clickhouse"), user=USER, password=PASSWORD) as endpoint:
        yield endpoint


@dataclass
class ClickHouse:
    """The test's view of the ClickHouse the command writes to."""

    endpoint: ClickHouseEndpoint
    client: object

    def count(self, table: str, *, final: bool = False) -> int:
        return int(self.client.command(f"SELECT count() FROM {DATABASE}.{table}{' FINAL' if final else ''}"))

    def column(self, table: str, column: str) -> list:
        rows = self.client.query(f"SELECT {column} FROM {DATABASE}.{table} FINAL ORDER BY {column}").result_rows
        return [row[0] for row in rows]

    def command(self, sql: str):
        return self.client.command(sql)


@pytest.fixture(scope="session")
def clickhouse_client(clickhouse_endpoint):
    """A client of the test's own, and aspects-sink's schema created once (the command is idempotent)."""
    connection = ("--url", clickhouse_endpoint.url, "--username", USER, "--password", PASSWORD)
    call_command("aspects_sink_schema", *connection, "--database", DATABASE, stdout=io.StringIO())
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=clickhouse_endpoint.port, username=USER, password=PASSWORD
    )
    yield client
    client.close()


@pytest.fixture
def backfill_clickhouse(clickhouse_endpoint, clickhouse_client, settings, db):
    """aspects-sink configured for the endpoint, every table emptied; PII on."""
    point_plugin_at(
        settings, clickhouse_client, clickhouse_endpoint, user=USER, password=PASSWORD, database=DATABASE, tables=TABLES
    )
    return ClickHouse(clickhouse_endpoint, clickhouse_client)


@pytest.fixture
def dump(backfill_clickhouse):
    """Run the command as an operator would (without rest between batches); returns what it printed."""

    def run(*arguments: str) -> str:
        output = io.StringIO()
        call_command("dump_data_to_clickhouse", "--sleep_time", "0", *arguments, stdout=output)
        return output.getvalue()

    return run


@pytest.fixture
def summary():
    """Parse the command's summary table: sink name → (rows, skipped, failed) as printed."""

    def parse(output: str) -> dict[str, tuple[int, int, int]]:
        lines = output.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("object ") and "rows/s" in line)
        table = {}
        for line in lines[header + 2 :]:
            cells = line.split()
            if len(cells) < 6 or not cells[1].replace(",", "").isdigit():
                break
            table[cells[0]] = tuple(int(cell.replace(",", "")) for cell in cells[1:4])
        return table

    return parse


@pytest.fixture
def learners(db):
    """Make ``count`` learners with profiles, through account creation; returns them in id order."""

    def make(count: int, prefix: str = "learner"):
        return [
            create_user(f"{prefix}{number}", f"{prefix}{number}@example.com", name=f"Learner {number}", country="GB")
            for number in range(count)
        ]

    return make


@pytest.fixture
def course(db):
    """Publish a course of ``blocks`` blocks; returns its key."""

    def make(number: int = 1, blocks: int = 12):
        return create_course("BackfillX", f"C{number:03d}", "2025", f"Course {number}", blocks=blocks)

    return make


@pytest.fixture
def enrollments(learners, course):
    """``count`` learners enrolled in one course; returns the enrollments in id order."""

    def make(count: int, mode: str = "audit"):
        course_key = course(99)
        return [CourseEnrollment.enroll(user, course_key, mode=mode) for user in learners(count, prefix="enrolled")]

    return make


@pytest.fixture
def clickhouse_selects(monkeypatch):
    """Every SELECT the plugin sends through its transport, as it sends it."""
    sent = []
    original = ClickHouseTransport.rows

    def rows(self, sql, parameters=None, settings=None):
        sent.append(sql)
        return original(self, sql, parameters, settings)

    monkeypatch.setattr(ClickHouseTransport, "rows", rows)
    return sent
