"""
The xAPI part of ``make demo``: learners' tracking events in the LMS become xAPI statements in ClickHouse.

The functions drive a :class:`processes.Devstack`: learners' activity runs in an LMS process
(``devstack_tools.learner_activity``, each event through ``eventtracking.tracker.emit``), and the counts are
read from ClickHouse's raw xAPI table, where the worker's drains put the statements.
"""

from __future__ import annotations

from processes import Devstack

EMIT = """
from devstack_tools import learner_activity
result = learner_activity.emit_rounds(COURSE, USERNAMES, rounds=ROUNDS)
"""

RAW_TABLE = "xapi.xapi_events_all"


def emit_learner_activity(devstack: Devstack, course_key: str, usernames: list[str], rounds: int = 1) -> int:
    """
    The learners (those of ``usernames`` that exist) do ``rounds`` rounds of activity in the course: enrollment,
    navigation, video, problem check, subsection grade. Returns the number of events emitted, one xAPI
    statement each.
    """
    code = EMIT.replace("COURSE", repr(course_key)).replace("USERNAMES", repr(list(usernames)))
    return devstack.run_python("lms", code.replace("ROUNDS", str(rounds)))


def count_statements(devstack: Devstack) -> int:
    """Statements in ClickHouse's raw xAPI table, each counted once (FINAL)."""
    return devstack.clickhouse_client().command(f"SELECT count() FROM {RAW_TABLE} FINAL")


def statements_by_verb(devstack: Devstack) -> dict[str, int]:
    """How many statements of each verb ClickHouse holds, for a short table in the demo's output."""
    verbs = "SELECT JSONExtractString(event, 'verb', 'display', 'en') AS verb, count()"
    query = f"{verbs} FROM {RAW_TABLE} FINAL GROUP BY verb ORDER BY verb"
    return dict(devstack.clickhouse_client().query(query).result_rows)
