"""
Helpers of the xAPI tests: the devstack's settings, its statement queue, learner activity in its LMS,
the statements ClickHouse holds, and raw-table counts.
"""

from __future__ import annotations

from tests.support import scenarios

# Fast retries and flushes, so outages heal within a test's patience.
DEVSTACK_SETTINGS = {
    "ASPECTS_ENABLE_PII": True,
    "ASPECTS_SINK_RETRY_BASE_SECONDS": 0.5,
    "ASPECTS_SINK_RETRY_MAX_SECONDS": 2,
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 2,
    "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS": 0.5,
    "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS": 0.5,
}


def statement_counts(devstack) -> dict:
    """Statements pending and dead in the devstack LMS's queue."""
    return devstack.run_function("lms", scenarios.statement_counts)


def wait_until_statements_drained(devstack, timeout: float = 60) -> None:
    devstack.wait_for(
        lambda: statement_counts(devstack)["pending"] == 0, timeout=timeout, interval=0.5, what="no pending statement"
    )


def events_file(devstack, name: str) -> str:
    """Where :func:`learners_do_a_course` keeps the tracking events of the course ``name``."""
    return str(devstack.state_dir / f"{name}.pickle")


def learners_do_a_course(devstack, name: str, *, learners: int, rounds: int) -> dict:
    """Learners go through a new course ``name`` in the devstack's LMS (see :func:`scenarios.learners_do_a_course`)."""
    return devstack.run_function(
        "lms",
        scenarios.learners_do_a_course,
        name=name,
        learners=learners,
        rounds=rounds,
        events_file=events_file(devstack, name),
    )


def send_again(devstack, name: str) -> None:
    """The tracking events of the course ``name`` are sent again."""
    devstack.run_function("lms", scenarios.send_again, events_file=events_file(devstack, name))


def statements_of(client, course: str, *, final: bool = False) -> list[tuple[str, str]]:
    """``(event_id, statement id in the JSON)`` of every row whose statement names the course."""
    table = f"xapi.xapi_events_all{' FINAL' if final else ''}"
    return client.query(
        f"SELECT toString(event_id), JSONExtractString(event, 'id') FROM {table}"
        " WHERE position(event, {c:String}) > 0",
        parameters={"c": course},
    ).result_rows


def wait_for_statements(devstack, client, course: str, count: int, *, final: bool = False, timeout: float = 60):
    """The course's statements, once at least ``count`` of them are in ClickHouse."""

    def arrived():
        rows = statements_of(client, course, final=final)
        return rows if len(rows) >= count else None

    return devstack.wait_for(arrived, timeout=timeout, what=f"{count} statements of {course}")


def raw_rows(transport, *, final: bool = False) -> int:
    """Rows of the configured raw table, before or after FINAL."""
    from aspects_sink.sinks.xapi_statements import raw_table

    return transport.command(f"SELECT count() FROM {raw_table().insert_target}{' FINAL' if final else ''}")
