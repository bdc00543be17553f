"""
The operator's view of the plugin: how far behind ClickHouse is, what is stuck and why, in one place.

:func:`collect` reads the LMS database (queues, dead letters, :class:`~aspects_sink.models.SinkHealth`) and asks
ClickHouse two questions (its version, its unfinished mutations); it changes nothing and schedules nothing. The
status command, the admin status page and the Prometheus metrics all show what it returns, so the three never
disagree. Each finding has a level (ok, warning, critical) from ``ASPECTS_SINK_STATUS_THRESHOLDS``; the worst is
the status's level and the command's exit code.
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import DatabaseError
from django.db.models import Case, Count, Min, Q, QuerySet, Value, When
from django.db.models.functions import Left, StrIndex
from django.utils import timezone

from aspects_sink import health, outbox
from aspects_sink.conf import aspects_settings
from aspects_sink.connection import get_transport
from aspects_sink.models import LeasedEntry, OutboxEntry, SinkHealth
from aspects_sink.progress import format_duration
from aspects_sink.sinks import schema
from aspects_sink.sinks.registry import all_sinks, all_tables
from aspects_sink.transport import ClickHouseTransport, TransportError

log = logging.getLogger(__name__)

# The SinkHealth row where the periodic sweep records its last run: no sink can have this name (names are
# identifiers), and a row of the existing table needs no schema change.
SWEEP_RECORD = "(sweep)"
# The version of ``as_json``'s layout; it changes only when a field is removed or changes meaning.
JSON_FORMAT = 1
UNKNOWN_REASON = "unknown"

_SECRETS = (
    (re.compile(r"(://)[^/@\s:]+:[^/@\s]+@"), r"\1***@"),  # credentials inside a URL
    (re.compile(r"(?i)(password|passwd|secret|token)(\s*[=:]\s*)\S+"), r"\1\2***"),
)


class Level(enum.IntEnum):
    """How bad a finding is; the value is the status command's exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Thresholds:
    """``ASPECTS_SINK_STATUS_THRESHOLDS``, typed."""

    oldest_pending_warning_seconds: float = 300
    oldest_pending_critical_seconds: float = 1800
    dead_letters_warning: int = 1
    dead_letters_critical: int = 1000
    sweep_warning_seconds: float = 600
    mutation_pending_warning_seconds: float = 3600

    @classmethod
    def from_settings(cls) -> Thresholds:
        values = aspects_settings.ASPECTS_SINK_STATUS_THRESHOLDS
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if values.get(name) is not None})


@dataclass(frozen=True)
class Finding:
    """Something an operator should know, with its level and the object it concerns."""

    level: Level
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.name} {self.subject}: {self.message}"


@dataclass(frozen=True)
class LastError:
    """The last error a drain recorded for a queue: when, its class (unavailable, configuration, rejected), what."""

    at: datetime.datetime
    error_class: str
    message: str


@dataclass(frozen=True)
class QueueStatus:
    """One sink's queue in the LMS database and what its drains last recorded."""

    name: str
    pending: int = 0
    oldest_pending_age_seconds: float | None = None
    retrying: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    last_success_at: datetime.datetime | None = None
    rows_delivered: int = 0
    inserts: int = 0
    last_error: LastError | None = None
    paused_since: datetime.datetime | None = None
    unrecorded_changes: int = 0  # changes the outbox could not record: they wait for a next change or a backfill
    last_unrecorded: LastError | None = None  # when changes last could not be recorded, and why

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letters_by_reason.values())

    @property
    def paused(self) -> bool:
        return self.paused_since is not None


@dataclass(frozen=True)
class ClickHouseStatus:
    """Whether ClickHouse answered, its version, or the error (without secrets)."""

    reachable: bool
    version: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Mutation:
    """A mutation on one of the plugin's tables that ClickHouse has not finished (or that failed)."""

    database: str
    table: str
    mutation_id: str
    command: str
    created_at: datetime.datetime
    age_seconds: float
    failed: bool
    fail_reason: str


@dataclass(frozen=True)
class SweepStatus:
    """When the periodic sweep (Celery beat, or ``aspects_sink_sweep`` from cron) last ran."""

    last_run_at: datetime.datetime | None
    age_seconds: float | None


@dataclass(frozen=True)
class SystemStatus:
    """Everything :func:`collect` found, and the levels it gave them."""

    checked_at: datetime.datetime
    queues: tuple[QueueStatus, ...]
    clickhouse: ClickHouseStatus
    mutations: tuple[Mutation, ...] | None  # None: ClickHouse could not be asked
    sweep: SweepStatus
    findings: tuple[Finding, ...]

    @property
    def level(self) -> Level:
        return max((finding.level for finding in self.findings), default=Level.OK)

    def queue_level(self, name: str) -> Level:
        return max((f.level for f in self.findings if f.subject == name), default=Level.OK)

    @property
    def mutations_pending(self) -> int:
        return sum(1 for mutation in self.mutations or () if not mutation.failed)

    @property
    def mutations_failed(self) -> int:
        return sum(1 for mutation in self.mutations or () if mutation.failed)

    def as_json(self) -> dict[str, Any]:
        """The stable JSON layout documented in the README (``aspects_sink_status --json``)."""
        return {
            "format": JSON_FORMAT,
            "checked_at": _iso(self.checked_at),
            "level": str(self.level),
            "exit_code": int(self.level),
            "queues": [
                {
                    "name": queue.name,
                    "level": str(self.queue_level(queue.name)),
                    "pending": queue.pending,
                    "oldest_pending_age_seconds": _round(queue.oldest_pending_age_seconds),
                    "retrying": queue.retrying,
                    "dead_letters": queue.dead_letters,
                    "dead_letters_by_reason": dict(sorted(queue.dead_letters_by_reason.items())),
                    "last_success_at": _iso(queue.last_success_at),
                    "rows_delivered": queue.rows_delivered,
                    "inserts": queue.inserts,
                    "last_error": (
                        {
                            "at": _iso(queue.last_error.at),
                            "class": queue.last_error.error_class,
                            "message": queue.last_error.message,
                        }
                        if queue.last_error
                        else None
                    ),
                    "paused": queue.paused,
                    "paused_since": _iso(queue.paused_since),
                    "unrecorded_changes": queue.unrecorded_changes,
                }
                for queue in self.queues
            ],
            "clickhouse": asdict(self.clickhouse),
            "mutations": (
                None
                if self.mutations is None
                else {
                    "pending": self.mutations_pending,
                    "failed": self.mutations_failed,
                    "unfinished": [
                        {
                            **asdict(mutation),
                            "created_at": _iso(mutation.created_at),
                            "age_seconds": _round(mutation.age_seconds),
                        }
                        for mutation in self.mutations
                    ],
                }
            ),
            "sweep": {"last_run_at": _iso(self.sweep.last_run_at), "age_seconds": _round(self.sweep.age_seconds)},
            "findings": [
                {"level": str(finding.level), "subject": finding.subject, "message": finding.message}
                for finding in self.findings
            ],
        }


def redact(message: str) -> str:
    """``message`` without credentials (a URL's user:password, ``password=...``), for operators' screens."""
    for pattern, replacement in _SECRETS:
        message = pattern.sub(replacement, message)
    return message


def record_sweep() -> None:
    """The periodic sweep ran now; recorded in the LMS database, so any process can tell whether beat is alive."""
    try:
        SinkHealth.objects.update_or_create(sink=SWEEP_RECORD, defaults={"last_success_at": timezone.now()})
    except DatabaseError as error:
        log.error("aspects_sink: could not record the sweep's run: %s", error)


def collect(transport: ClickHouseTransport | None = None, thresholds: Thresholds | None = None) -> SystemStatus:
    """The plugin's state now: read-only, a few aggregate queries in the LMS database and two in ClickHouse."""
    now = timezone.now()
    thresholds = thresholds or Thresholds.from_settings()
    recorded = health.snapshot()
    queues = tuple(_queue_statuses(now, recorded))
    sweep_row = recorded.get(SWEEP_RECORD)
    sweep_at = sweep_row.last_success_at if sweep_row else None
    sweep = SweepStatus(sweep_at, (now - sweep_at).total_seconds() if sweep_at else None)
    transport = transport or get_transport()
    clickhouse = _clickhouse_status(transport)
    mutations, unread = None, None
    if clickhouse.reachable:
        try:
            mutations = _mutations(transport, now)
        except TransportError as error:  # ClickHouse answers, but not about them: unknown, which is no "OK"
            log.warning("aspects_sink: could not read ClickHouse's mutations: %s", error)
            unread = redact(str(error))
    findings = _findings(queues, clickhouse, mutations, sweep, thresholds, now=now)
    if unread:
        findings.append(Finding(Level.WARNING, "clickhouse", f"could not read its mutations (retirement's): {unread}"))
    return SystemStatus(now, queues, clickhouse, mutations, sweep, tuple(findings))


def dead_letter_reasons(entries: QuerySet) -> QuerySet:
    """
    ``entries`` annotated with ``reason``: the kind of error that parked them, the exception's name that
    starts ``last_error`` (``ClickHouseRejected``, ``SerializationError``...), computed by the database.
    """
    colon = StrIndex("last_error", Value(":"))
    return entries.annotate(
        reason=Case(When(last_error__contains=":", then=Left("last_error", colon - 1)), default=Value(UNKNOWN_REASON))
    )


def _queue_statuses(now: datetime.datetime, recorded: dict[str, SinkHealth]) -> Iterable[QueueStatus]:
    pending_figures = Q(state=LeasedEntry.PENDING)
    aggregates = {
        "pending": Count("id", filter=pending_figures),
        "oldest": Min("created", filter=pending_figures),
        # Failed at least once: given back while ClickHouse was away (waits), or tried before the try in hand (a
        # claim counts its try up front: a batch on its first try is no retry).
        "retrying": Count(
            "id", filter=pending_figures & (Q(waits__gt=0) | Q(attempts__gt=1) | Q(attempts=1, claim=""))
        ),
    }
    figures: dict[str, dict] = {row["sink"]: row for row in OutboxEntry.objects.values("sink").annotate(**aggregates)}
    dead: dict[str, dict[str, int]] = {}
    outbox_dead = dead_letter_reasons(OutboxEntry.objects.filter(state=LeasedEntry.DEAD))
    for row in outbox_dead.values("sink", "reason").annotate(count=Count("id")).order_by():
        dead.setdefault(row["sink"], {})[row["reason"] or UNKNOWN_REASON] = row["count"]
    names = list(all_sinks())
    for name, sink in all_sinks().items():
        if not sink.queue.shared:
            queue = outbox.queue(name)
            figures[name] = queue.entries.aggregate(**aggregates)
            own_dead = dead_letter_reasons(queue.dead_letters()).values("reason").annotate(count=Count("id")).order_by()
            dead[name] = {row["reason"] or UNKNOWN_REASON: row["count"] for row in own_dead}
    # Sinks this process does not know (a site sink since removed) still have entries or health to show.
    names += sorted((set(figures) | set(recorded)) - set(names) - {SWEEP_RECORD})
    for name in names:
        row = figures.get(name) or {}
        record = recorded.get(name)
        oldest = row.get("oldest")
        yield QueueStatus(
            name=name,
            pending=row.get("pending") or 0,
            oldest_pending_age_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else None,
            retrying=row.get("retrying") or 0,
            dead_letters_by_reason=dead.get(name, {}),
            last_success_at=record.last_success_at if record else None,
            rows_delivered=record.rows_delivered if record else 0,
            inserts=record.inserts if record else 0,
            last_error=(
                LastError(record.last_error_at, record.last_error_class, redact(record.last_error))
                if record and record.last_error_at
                else None
            ),
            paused_since=record.paused_since if record else None,
            unrecorded_changes=record.failed_outbox_writes if record else 0,
            last_unrecorded=(
                LastError(record.outbox_failed_at, SinkHealth.CONFIGURATION, redact(record.outbox_failure))
                if record and record.outbox_failed_at
                else None
            ),
        )


def _clickhouse_status(transport: ClickHouseTransport) -> ClickHouseStatus:
    try:
        return ClickHouseStatus(reachable=True, version=transport.ping())
    except TransportError as error:
        return ClickHouseStatus(reachable=False, error=redact(str(error)))


def _mutations(transport: ClickHouseTransport, now: datetime.datetime) -> tuple[Mutation, ...]:
    """Unfinished or failed mutations on the plugin's tables (retirement's), from ``system.mutations``."""
    targets = sorted(
        {(table.database or schema.database(), schema.storage_table(table.name)) for table in all_tables()}
    )
    if not targets:
        return ()
    source = schema.mutations_log()
    sql = (
        "SELECT database, table, mutation_id, command, create_time, latest_fail_reason "
        f"FROM {source} WHERE (database, table) IN {{targets:Array(Tuple(String, String))}} "
        "AND (is_done = 0 OR latest_fail_reason != '') ORDER BY create_time"
    )
    rows = transport.rows(sql, {"targets": targets})
    return tuple(
        Mutation(
            database=database,
            table=table,
            mutation_id=mutation_id,
            command=redact(" ".join(str(command).split()))[:500],
            created_at=_aware(created),
            age_seconds=max((now - _aware(created)).total_seconds(), 0.0),
            failed=bool(reason),
            fail_reason=redact(reason)[:1000],
        )
        for database, table, mutation_id, command, created, reason in rows
    )


def _findings(
    queues: tuple[QueueStatus, ...],
    clickhouse: ClickHouseStatus,
    mutations: tuple[Mutation, ...] | None,
    sweep: SweepStatus,
    thresholds: Thresholds,
    *,
    now: datetime.datetime,
) -> list[Finding]:
    found = []
    if not clickhouse.reachable:
        found.append(Finding(Level.CRITICAL, "clickhouse", f"unreachable: {clickhouse.error}"))
    for queue in queues:
        unrecorded = _unrecorded_lately(queue, now)
        if unrecorded:
            found.append(Finding(Level.CRITICAL, queue.name, unrecorded))
        if queue.paused:
            error = queue.last_error.message if queue.last_error else "a configuration error"
            found.append(Finding(Level.CRITICAL, queue.name, f"paused since {_iso(queue.paused_since)}: {error}"))
        age = queue.oldest_pending_age_seconds
        if age is not None and age >= thresholds.oldest_pending_warning_seconds:
            critical = age >= thresholds.oldest_pending_critical_seconds
            limit = (
                thresholds.oldest_pending_critical_seconds if critical else thresholds.oldest_pending_warning_seconds
            )
            found.append(
                Finding(
                    Level.CRITICAL if critical else Level.WARNING,
                    queue.name,
                    f"oldest pending entry is {format_duration(age)} old ({queue.pending} pending; "
                    f"{'critical' if critical else 'warning'} from {format_duration(limit)})",
                )
            )
        if queue.dead_letters >= thresholds.dead_letters_warning:
            critical = queue.dead_letters >= thresholds.dead_letters_critical
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(queue.dead_letters_by_reason.items()))
            found.append(
                Finding(
                    Level.CRITICAL if critical else Level.WARNING,
                    queue.name,
                    f"{queue.dead_letters} dead letters ({reasons}): see aspects_sink_dead_letters",
                )
            )
    for mutation in mutations or ():
        subject = f"{mutation.database}.{mutation.table}"
        if mutation.failed:
            found.append(
                Finding(Level.CRITICAL, subject, f"mutation {mutation.mutation_id} failed: {mutation.fail_reason}")
            )
        elif mutation.age_seconds >= thresholds.mutation_pending_warning_seconds:
            found.append(
                Finding(
                    Level.WARNING,
                    subject,
                    f"mutation {mutation.mutation_id} pending for {format_duration(mutation.age_seconds)}",
                )
            )
    if sweep.age_seconds is None:
        found.append(Finding(Level.WARNING, "sweep", "the periodic sweep has never run: is Celery beat running?"))
    elif sweep.age_seconds >= thresholds.sweep_warning_seconds:
        found.append(
            Finding(
                Level.WARNING, "sweep", f"last ran {format_duration(sweep.age_seconds)} ago: is Celery beat running?"
            )
        )
    return found


# For how long after changes could not be recorded the status says so (the alert, on the counter, alike).
UNRECORDED_SHOWN_SECONDS = 3600


def _unrecorded_lately(queue: QueueStatus, now: datetime.datetime) -> str | None:
    """
    What to say when changes of the queue could not be recorded within the last hour, whatever the drains recorded
    since: they reach ClickHouse only with the object's next change or a backfill (docs/decisions/0001).
    """
    failure = queue.last_unrecorded
    if not failure or (now - _aware(failure.at)).total_seconds() >= UNRECORDED_SHOWN_SECONDS:
        return None
    return (
        f"{queue.unrecorded_changes} changes could not be recorded in the outbox since its health was first "
        f"recorded, the last {format_duration((now - _aware(failure.at)).total_seconds())} ago "
        f"({failure.message}); they reach ClickHouse with the object's next "
        "change: once the cause is fixed, run a backfill (dump_data_to_clickhouse) of this object"
    )


def _aware(value: datetime.datetime) -> datetime.datetime:
    return value if timezone.is_aware(value) else value.replace(tzinfo=datetime.UTC)


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
