"""
The fault matrix's helpers (tests/faults): a devstack per backend whose every service can be killed, what the
LMS holds compared exactly with ClickHouse after ``FINAL``, and each scenario's outcome recorded as a row of
the matrix (JSON lines, rendered as the markdown table of ``docs/fault-matrix.md`` by ``scripts/fault-matrix-table``).

A scenario's outcome counts rows of the objects it changed (fresh learners, courses and statements, named by
the scenario's prefix), so scenarios run one after another on one devstack compare only their own rows:

* **expected**: rows the LMS holds (or statements event-routing-backends makes of the committed events);
* **found**: the scenario's rows in ClickHouse after ``FINAL``;
* **lost**: expected rows not found exactly (missing, or with any value different);
* **duplicates**: rows after ``FINAL`` beyond one per key;
* **unexpected**: rows found that the LMS does not hold (a rolled-back change, a stale value);
* **failed requests**: platform actions (registrations, saves, enrollments, tracking events) that raised.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.support.scenarios import FAULT_PROFILE_COLUMNS

PATHS = ("live", "backfill", "xapi")
# How long a wait may last before it is taken for a hang. Generous: CI runs the matrix beside four other tox
# environments on two cores; a passing scenario waits only as long as its condition takes.
PATIENCE = 300
BACKENDS = ("sqlite-embedded", "mariadb-redis")
# The rows of the table, in order: (scenario id, what it does).
SCENARIOS = (
    ("clickhouse_killed", "ClickHouse killed (SIGKILL) mid-batch, then restarted"),
    ("clickhouse_slow", "ClickHouse frozen beyond the client's read timeout mid-batch (the late insert still lands)"),
    ("broker_killed", "broker (Redis) killed while learners work, then restarted"),
    ("cache_killed", "cache (Redis) killed during learner requests, then restarted"),
    ("worker_killed", "worker SIGKILLed mid-batch; its lease runs out, a new worker takes over"),
    ("delivered_twice", "the same batch inserted twice (acknowledgement lost; backfill: run twice)"),
    ("row_rejected", "one row rejected by ClickHouse (a constraint), then fixed and replayed"),
    ("table_renamed", "table renamed, then renamed back"),
    ("column_missing", "a column dropped, then added back"),
    ("permission_revoked", "INSERT grant revoked, then granted again"),
    ("rolled_back", "LMS transactions rolled back among committed ones"),
    ("backfill_killed", "backfill killed (SIGKILL) mid-run, then `--resume`"),
    ("course_unserializable", "a course that fails to serialize among good ones, then fixed"),
    ("hostile_text", "CJK, RTL, emoji, NUL/control characters, quotes, backslashes, `'; DROP TABLE`, 100 KB values"),
    ("nulls_and_edge_dates", "NULL in every nullable field, dates at the edges, odd course keys"),
    ("big_course", "a 20,000-block course"),
    ("deep_course", "a 500-deep course"),
)

EMBEDDED_BROKER = "the embedded broker is a folder of files: there is no process to kill"
FILE_CACHE = "the file cache has no process to kill"
# (scenario, path, backend or None for every backend) pairs that cannot happen, and why: shown as n/a in the table.
NOT_APPLICABLE = {
    ("broker_killed", "backfill", None): "the backfill runs in the command's process and uses no broker",
    ("broker_killed", "live", "sqlite-embedded"): EMBEDDED_BROKER,
    ("broker_killed", "xapi", "sqlite-embedded"): EMBEDDED_BROKER,
    ("cache_killed", "backfill", None): "the backfill uses no cache",
    ("cache_killed", "live", "sqlite-embedded"): FILE_CACHE,
    ("cache_killed", "xapi", "sqlite-embedded"): FILE_CACHE,
    ("worker_killed", "backfill", None): "the backfill's worker is the command itself: see backfill killed",
    ("rolled_back", "backfill", None): "a backfill reads committed rows only: a rolled-back change never exists for it",
    ("backfill_killed", "live", None): "backfill only",
    ("backfill_killed", "xapi", None): "backfill only",
    ("course_unserializable", "xapi", None): (
        "no course on the xAPI route; an event ERB cannot transform becomes a dead letter naming it (tests/xapi)"
    ),
    ("nulls_and_edge_dates", "xapi", None): "statements carry no nullable platform fields",
    ("big_course", "xapi", None): "courses are not sent on the xAPI route",
    ("deep_course", "xapi", None): "courses are not sent on the xAPI route",
    ("big_course", "backfill", None): "run once, live (the backfill reads a course with the same code)",
    ("deep_course", "backfill", None): "run once, live (the backfill reads a course with the same code)",
    ("big_course", "live", "mariadb-redis"): "run once, on SQLite: the course's size is the fault, not the backend",
    ("deep_course", "live", "mariadb-redis"): "run once, on SQLite: the course's size is the fault, not the backend",
}


def not_applicable(scenario: str, path: str, backend: str) -> str | None:
    return NOT_APPLICABLE.get((scenario, path, backend)) or NOT_APPLICABLE.get((scenario, path, None))


# -- outcomes -----------------------------------------------------------------------------------------------------


@dataclass
class Count:
    """The comparison of one scenario's rows: expected, found, and how they differ."""

    expected: int = 0
    found: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    raw: int = 0  # rows before FINAL: more than found when something was inserted twice
    examples: list[str] = field(default_factory=list)

    def __add__(self, other: Count) -> Count:
        return Count(
            *(getattr(self, name) + getattr(other, name) for name in ("expected", "found", "lost", "duplicates")),
            self.unexpected + other.unexpected,
            self.raw + other.raw,
            (self.examples + other.examples)[:5],
        )

    @property
    def exact(self) -> bool:
        return self.lost == self.duplicates == self.unexpected == 0 and self.found == self.expected


def compare(table: str, expected: Iterable[Sequence], found: Iterable[Sequence], key: int, raw: int) -> Count:
    """
    Compare rows exactly (every value as text); ``key`` is how many leading values make the key. Rows are
    compared as multisets, so a row found twice is a duplicate, not a match.
    """
    expected_rows = Counter(tuple(map(str, row)) for row in expected)
    found_rows = Counter(tuple(map(str, row)) for row in found)
    keys = Counter(row[:key] for row in found_rows.elements())
    lost = expected_rows - found_rows
    unexpected = Counter(set(found_rows)) - Counter(set(expected_rows))
    lost_keys = {row[:key] for row in lost}
    found_by_key = {row[:key]: row for row in unexpected}
    examples = [_difference(table, key, row, found_by_key.get(row[:key])) for row in list(lost)[:2]]
    examples += [f"{table} unexpected {_short(row)}" for row in list(unexpected)[:2] if row[:key] not in lost_keys]
    return Count(
        expected=sum(expected_rows.values()),
        found=sum(found_rows.values()),
        lost=sum(lost.values()),
        duplicates=sum(count - 1 for count in keys.values()),
        unexpected=sum(unexpected.values()),
        raw=raw,
        examples=examples,
    )


def _difference(table: str, key: int, expected: tuple, found: tuple | None) -> str:
    """A lost row, and where ClickHouse holds its key with other values, only the values that differ."""
    if found is None:
        return f"{table} lost {_short(expected)}"
    columns = [index for index, (want, got) in enumerate(zip(expected, found, strict=True)) if want != got]
    return f"{table} {_short(expected[:key])} differs in column(s) {columns}: " + ", ".join(
        f"expected {_short((expected[index],))} found {_short((found[index],))}" for index in columns
    )


def _short(row: tuple) -> str:
    return repr(tuple(value if len(value) < 60 else value[:40] + f"...({len(value)} chars)" for value in row))


@dataclass
class Outcome:
    """One cell of the matrix: what a scenario did on one path and backend, and what ClickHouse holds after it."""

    scenario: str
    path: str
    backend: str
    changes: int
    expected: int
    found: int
    lost: int
    duplicates: int
    unexpected: int
    failed_requests: int
    raw: int
    seconds: float
    notes: str = ""

    @classmethod
    def of(
        cls,
        scenario: str,
        path: str,
        backend: str,
        *,
        changes: int,
        count: Count,
        failed: Sequence[str],
        seconds: float,
        notes: str = "",
    ) -> Outcome:
        return cls(
            scenario,
            path,
            backend,
            changes,
            count.expected,
            count.found,
            count.lost,
            count.duplicates,
            count.unexpected,
            len(failed),
            count.raw,
            round(seconds, 1),
            notes,
        )


def results_dir() -> Path:
    """Where outcomes are recorded: ``$FAULT_MATRIX_OUT``, else a folder under the system's temporary directory."""
    configured = os.environ.get("FAULT_MATRIX_OUT")
    path = Path(configured) if configured else Path(os.environ.get("TMPDIR", "/tmp")) / f"fault-matrix-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def record(outcome: Outcome) -> None:
    """Print the outcome and append it to ``results.jsonl`` in :func:`results_dir`."""
    print(
        f"[fault matrix] {outcome.scenario} × {outcome.path} on {outcome.backend}: {outcome.changes} changes, "
        f"{outcome.expected} expected, {outcome.found} found, lost {outcome.lost}, duplicates {outcome.duplicates}, "
        f"unexpected {outcome.unexpected}, failed requests {outcome.failed_requests} ({outcome.raw} rows before "
        f"FINAL, {outcome.seconds}s){' — ' + outcome.notes if outcome.notes else ''}"
    )
    with open(results_dir() / "results.jsonl", "a", encoding="utf-8") as results:
        results.write(json.dumps(asdict(outcome)) + "\n")


def render_table(outcomes: Sequence[dict], backends: Sequence[str] = ("sqlite-embedded", "mariadb-redis")) -> str:
    """
    The matrix as markdown: a row per scenario, a column per path and backend, each cell ``lost / duplicates /
    failed requests`` (with rows expected = found), ``n/a`` with its reason, or ``not run``.
    """
    latest = {(o["scenario"], o["path"], o["backend"]): o for o in outcomes}
    header = ["scenario"] + [f"{path} · {backend}" for path in PATHS for backend in backends]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reasons: dict[str, int] = {}
    for scenario, description in SCENARIOS:
        cells = [f"**{scenario}**: {description}"]
        for path in PATHS:
            for backend in backends:
                outcome = latest.get((scenario, path, backend))
                reason = not_applicable(scenario, path, backend)
                if outcome:
                    mark = "" if outcome["expected"] == outcome["found"] and not outcome["unexpected"] else " ✗"
                    cells.append(
                        f"{outcome['lost']} / {outcome['duplicates']} / {outcome['failed_requests']} "
                        f"({outcome['found']}/{outcome['expected']} rows){mark}"
                    )
                elif reason:
                    number = reasons.setdefault(reason, len(reasons) + 1)
                    cells.append(f"n/a [{number}]")
                else:
                    cells.append("not run")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"[{number}] {reason}  " for reason, number in reasons.items()]
    return "\n".join(lines) + "\n"


# -- the LMS database, read from the test process (no Django start-up per look) -------------------------------------


class LmsDatabase:
    """Read-only queries on a devstack's LMS database, SQLite or MariaDB, with ``%s`` parameters."""

    def __init__(self, devstack):
        self.devstack = devstack

    def rows(self, sql: str, *parameters) -> list[tuple]:
        if self.devstack.database == "mysql":
            import pymysql

            connection = pymysql.connect(
                host="127.0.0.1",
                port=3306,
                user="root",
                password="",
                database=self.devstack.mysql_database,
                autocommit=True,
            )
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql, parameters)
                    return list(cursor.fetchall())
            finally:
                connection.close()
        uri = f"file:{self.devstack.state_dir / 'db.sqlite3'}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=30) as connection:
            return connection.execute(sql.replace("%s", "?"), parameters).fetchall()

    def queues(self) -> dict[str, int]:
        """Pending and dead entries of the outbox and the statement queue."""
        counts = {"pending": 0, "dead": 0}
        for table in ("aspects_sink_outboxentry", "aspects_sink_xapistatement"):
            for state, count in self.rows(f"SELECT state, COUNT(*) FROM {table} GROUP BY state"):
                counts[state] = counts.get(state, 0) + count
        return counts

    def dead_letters(self) -> list[tuple[str, str, str]]:
        """(sink, object, error) of every dead letter of the outbox."""
        return self.rows("SELECT sink, object_id, last_error FROM aspects_sink_outboxentry WHERE state = 'dead'")

    def dead_statements(self) -> int:
        return self.rows("SELECT COUNT(*) FROM aspects_sink_xapistatement WHERE state = 'dead'")[0][0]

    def running_dump_rows(self, sink: str) -> int:
        """Rows acknowledged so far by the running backfill of a sink (0 if none runs)."""
        rows = self.rows("SELECT `rows` FROM aspects_sink_dumpcheckpoint WHERE sink = %s AND state = 'running'", sink)
        return sum(row[0] for row in rows)

    def paused(self, sink: str) -> str | None:
        """The last error of a sink paused by a configuration error, None while it flows."""
        rows = self.rows(
            "SELECT last_error FROM aspects_sink_sinkhealth WHERE sink = %s AND paused_since IS NOT NULL", sink
        )
        return rows[0][0] if rows else None

    def claimed(self) -> int:
        """Entries some worker holds the lease on."""
        return sum(
            self.rows(f"SELECT COUNT(*) FROM {table} WHERE claim != '' AND state = 'pending'")[0][0]
            for table in ("aspects_sink_outboxentry", "aspects_sink_xapistatement")
        )

    def waited(self, table: str) -> int:
        """Entries of a queue's table given back at least once because ClickHouse was unavailable or misconfigured."""
        return self.rows(f"SELECT COUNT(*) FROM {table} WHERE waits > 0 AND state = 'pending'")[0][0]


# -- ClickHouse: the scenario's rows after FINAL ---------------------------------------------------------------------

PROFILE_SELECT = ", ".join(("id", "user_id", "username", "email", *FAULT_PROFILE_COLUMNS))


def learner_count(client, prefix: str, course: str, expected: dict) -> Count:
    """The learners of ``prefix`` (profiles, external ids, enrollments in ``course``) against what the LMS holds."""

    def rows(sql: str, **parameters) -> list:
        return client.query(sql, parameters=parameters).result_rows

    where_user = "WHERE startsWith(username, {p:String})"
    profiles = compare(
        "user_profile",
        expected["user_profile"],
        rows(f"SELECT {PROFILE_SELECT} FROM user_profile FINAL {where_user}", p=prefix),
        key=1,
        raw=client.command(f"SELECT count() FROM user_profile {where_user}", parameters={"p": prefix}),
    )
    external_ids = compare(
        "external_id",
        expected["external_id"],
        rows(f"SELECT toString(external_user_id), user_id, username FROM external_id FINAL {where_user}", p=prefix),
        key=1,
        raw=client.command(f"SELECT count() FROM external_id {where_user}", parameters={"p": prefix}),
    )
    where_course = "WHERE course_key = {c:String}"
    enrollments = compare(
        "course_enrollment",
        expected["course_enrollment"],
        rows(
            f"SELECT course_key, user_id, mode, is_active, username FROM course_enrollment FINAL {where_course}",
            c=course,
        ),
        key=2,
        raw=client.command(f"SELECT count() FROM course_enrollment {where_course}", parameters={"c": course}),
    )
    return profiles + external_ids + enrollments


def course_count(client, expected: dict, courses: Sequence[str]) -> Count:
    """Courses (overviews and blocks) against what the modulestore holds."""
    keys = {"k": list(courses)}
    overviews = compare(
        "course_overviews",
        expected["course_overviews"],
        client.query(
            "SELECT course_key, display_name FROM course_overviews FINAL WHERE course_key IN {k:Array(String)}",
            parameters=keys,
        ).result_rows,
        key=1,
        raw=client.command(
            "SELECT count() FROM course_overviews WHERE course_key IN {k:Array(String)}", parameters=keys
        ),
    )
    blocks = compare(
        "course_blocks",
        expected["course_blocks"],
        client.query(
            "SELECT course_key, location, display_name FROM course_blocks FINAL WHERE course_key IN {k:Array(String)}",
            parameters=keys,
        ).result_rows,
        key=2,
        raw=client.command("SELECT count() FROM course_blocks WHERE course_key IN {k:Array(String)}", parameters=keys),
    )
    return overviews + blocks


def statement_count(client, course: str, expected: dict) -> Count:
    """The course's statements in the raw table against those event-routing-backends made of the committed events."""
    found = client.query(
        "SELECT toString(event_id), event FROM xapi.xapi_events_all FINAL WHERE position(event, {c:String}) > 0",
        parameters={"c": course},
    ).result_rows
    raw = client.command(
        "SELECT count() FROM xapi.xapi_events_all WHERE position(event, {c:String}) > 0", parameters={"c": course}
    )
    canonical = {event_id: json.dumps(statement, sort_keys=True) for event_id, statement in expected.items()}
    return compare(
        "xapi_events_all",
        canonical.items(),
        [(event_id, json.dumps(json.loads(event), sort_keys=True)) for event_id, event in found],
        key=1,
        raw=raw,
    )


def settle(devstack, lms_database: LmsDatabase, count: Callable[[], Count], timeout: float = PATIENCE) -> Count:
    """
    Wait until the scenario's rows are exact and nothing is pending in the LMS's queues, then count once more
    (a row arriving late would show); on timeout, the last count, for the record and the assertion.
    """
    last = Count()

    def settled() -> bool:
        nonlocal last
        last = count()
        return last.exact and lms_database.queues()["pending"] == 0

    try:
        devstack.wait_for(settled, timeout=timeout, interval=0.3, what="the scenario's rows in ClickHouse")
    except TimeoutError:
        return last
    return count()


def request_in_flight(port: int) -> bool:
    """Whether a request waits, unread, on a connection to the ClickHouse endpoint (from ``/proc/net/tcp``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            receive_queue = int(fields[4].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and receive_queue > 0:  # 01: ESTABLISHED
                return True
    return False


def wait_until(predicate: Callable[[], object], what: str, timeout: float = PATIENCE, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
