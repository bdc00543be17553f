"""
xAPI statements into Aspects' raw table (``xapi.xapi_events_all``, Ralph's layout).

Events wait in a queue with a table of their own (:class:`~aspects_sink.models.XapiStatement`): unlike
platform objects, an event cannot be read again at send time, so the entry carries it, as the request
emitted it. The drain makes the statements of a batch of events with event-routing-backends' transformers
(:func:`aspects_sink.erb.transform`) and inserts them at once; an event ERB cannot make a statement of is
named in its entry's error, retried and then parked as a dead letter, while the others go through (one it
makes no statement of is left out, as ERB's own route leaves it). Entries
may also carry statements already made (a history batch ClickHouse refused), sent as they are. The raw
table has no bookkeeping columns, since a statement never changes, and collapses on its key without a
version, so a statement sent twice (a retry, a history import overlapping the live route) is one row.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence

from django.db.models import Q

from aspects_sink import edx_platform, erb, toggles
from aspects_sink.conf import aspects_settings
from aspects_sink.erb import transformation
from aspects_sink.isolation import ObjectsAtFault
from aspects_sink.models import RetiredUser, XapiStatement, retired_user_ids
from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import QueueSpec, SerializationError, Sink, Stamp, TableSpec
from aspects_sink.transport import ClickHouseMisconfigured, ColumnBatch

RAW_COLUMNS = (col.UUID("event_id"), col.DateTime64("emission_time"), col.String("event"))
_CHUNK = 900  # stay under SQLite's bound on parameters per statement

log = logging.getLogger(__name__)


def actor_id(statement: str) -> str:
    """The actor's account name of a statement as JSON (the anonymous external id), or ''."""
    try:
        account = (json.loads(statement).get("actor") or {}).get("account") or {}
    except (ValueError, AttributeError):
        return ""
    return str(account.get("name") or "")


def retired_actor_ids(actor_ids: Iterable[str]) -> set[str]:
    """
    Which of these actor ids (external ids) belong to users recorded as retired: one query per 900 ids.
    The xAPI route and the tracking-log history leave their statements out.
    """
    wanted = {}
    for value in actor_ids:
        try:
            wanted[uuid.UUID(str(value))] = value
        except ValueError:
            continue
    external_id = edx_platform.get_model("external_id")
    found: set[str] = set()
    keys = list(wanted)
    for start in range(0, len(keys), _CHUNK):
        rows = external_id._default_manager.filter(
            external_user_id__in=keys[start : start + _CHUNK], user_id__in=RetiredUser.objects.values("user_id")
        ).values_list("external_user_id", flat=True)
        found.update(wanted[value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))] for value in rows)
    return found


def without_retired_actors(rows: Sequence[tuple]) -> list[tuple]:
    """``(event_id, emission_time, event)`` rows, less those whose actor is a retired user."""
    actors = [actor_id(row[2]) for row in rows]
    retired = retired_actor_ids(actor for actor in actors if actor)
    if not retired:
        return list(rows)
    log.info("aspects_sink: left out %d xAPI statements of retired users", sum(actor in retired for actor in actors))
    return [row for row, actor in zip(rows, actors) if actor not in retired]


def raw_table() -> TableSpec:
    """
    The raw table statements go to: ``ASPECTS_SINK_XAPI_TABLE`` in ``ASPECTS_SINK_XAPI_DATABASE``, else in the
    connection's ``xapi_database`` (Tutor's ASPECTS_XAPI_DATABASE), else in ``xapi``.
    """
    database = (
        aspects_settings.ASPECTS_SINK_XAPI_DATABASE
        or aspects_settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG.get("xapi_database")
        or "xapi"
    )
    return TableSpec(
        name=aspects_settings.ASPECTS_SINK_XAPI_TABLE,
        columns=RAW_COLUMNS,
        key=("emission_time", "event_id"),
        database=database,
        partition_by="toYYYYMM(emission_time)",
        version_column=None,
        bookkeeping=(),
    )


class XapiStatementSink(Sink):
    """Writes queued statements to the raw table. It reads no platform model, so there is nothing to backfill."""

    name = "xapi_statements"
    queue = QueueSpec(
        model=XapiStatement,
        sink_field=None,
        key_field="pk",
        batch_size_setting="ASPECTS_SINK_XAPI_BATCH_SIZE",
        max_attempts_setting="ASPECTS_SINK_XAPI_MAX_ATTEMPTS",
        max_dead_setting="ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS",
        payload_field="statement",
    )
    drain_interval_setting = "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS"
    order = 200
    description = "xAPI statements from event-routing-backends, into the raw xAPI table"

    @property
    def gather_seconds(self) -> float:
        """The first statement after a quiet period waits the xAPI flush interval, not the platform sinks' one."""
        return self.drain_interval

    def is_enabled(self) -> bool:
        """Always: statements recorded before the route was switched off are still owed to ClickHouse."""
        return True

    def tables(self) -> tuple[TableSpec, ...]:
        """The raw table, for the schema command, while statements are routed to ClickHouse."""
        return (raw_table(),) if toggles.xapi_enabled() else ()

    def writes_for(self, object_ids: Sequence[int], stamp: Stamp) -> list[ColumnBatch]:
        """
        The statements of these entries (statements carry their own identity: no stamp): ERB's of the events,
        those already made as they are, less those of users retired since. Entries whose event ERB fails on are
        named (:class:`~aspects_sink.isolation.ObjectsAtFault`); the others are sent again. An event ERB makes no
        statement of (it leaves out a statement without an object id) is counted in a WARNING and done with.
        """
        rows: list[tuple] = []
        failed: dict = {}
        unmade: Counter[str] = Counter()
        with transformation.sped_up():  # for this batch: ERB's statements, without the work it repeats
            self._transform(object_ids, rows, failed, unmade)
        if unmade:  # as ERB's own route and the history import do: no statement, nothing to send or retry
            log.warning(
                "aspects_sink: event-routing-backends made no statement of %d events (%s); it leaves such events "
                "out (a statement without an object id)",
                unmade.total(),
                ", ".join(f"{name} ×{count}" for name, count in unmade.most_common()),
            )
        if failed:
            raise ObjectsAtFault(failed)
        return [raw_batch(without_retired_actors(rows))]

    def _transform(self, object_ids: Sequence[int], rows: list[tuple], failed: dict, unmade: Counter) -> None:
        """
        Into ``rows``, the statements of the entries; into ``failed``, the entries ERB failed on; into ``unmade``,
        by event name, the events it made no statement of.
        """
        steps = None
        for start in range(0, len(object_ids), _CHUNK):
            chunk = object_ids[start : start + _CHUNK]
            entries = XapiStatement.objects.filter(pk__in=chunk).values_list(
                "pk", "event_id", "emission_time", "statement", "event_name"
            )
            events = {}
            for pk, event_id, emitted, text, event_name in entries:
                if not event_name:
                    rows.append((event_id, emitted, text))
                    continue
                try:
                    events[pk] = erb.event_from_text(text)
                except ValueError as error:  # text that is not an event
                    failed[str(pk)] = SerializationError(self.name, pk, str(error))
            users = {pk: user_of_event(event) for pk, event in events.items()}
            retired = retired_user_ids(filter(None, users.values()))
            if retired:  # dropped, never parked: a dead letter would keep their personal data
                dropped = [pk for pk, user in users.items() if user in retired]
                log.info("aspects_sink: left out %d tracking events of retired users", len(dropped))
                for pk in dropped:
                    del events[pk]
            for pk, event in events.items():
                steps = steps or transforming_steps()
                try:
                    made = erb.transform(steps, event)
                except erb.TransformationError as error:
                    failed[str(pk)] = SerializationError(self.name, pk, str(error))
                    continue
                if not made:
                    unmade[str(event.get("name"))] += 1
                rows += made


def user_of_event(event: dict) -> int | None:
    """The id of the user a tracking event is of (its context's ``user_id``), None for an anonymous one."""
    context = event.get("context") if isinstance(event, dict) else None
    user_id = context.get("user_id") if isinstance(context, dict) else None
    try:
        return int(user_id)
    except (TypeError, ValueError):
        return None


def forget_parked_events_of(user_ids: Sequence[int]) -> int:
    """
    Delete the parked tracking events of these (retired) users: a dead letter keeps the whole event (username,
    IP address, user agent) until it is replayed or evicted. Events still waiting are dropped by the drain
    (:meth:`XapiStatementSink.writes_for`), as their statements would be. Return the events deleted.

    Matched on the ``user_id`` of the event's context as :func:`aspects_sink.erb.event_text` wrote it (compact
    JSON), among dead letters only: their number is bounded (``ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS``), and
    entries a drain holds are left to it.
    """
    wanted = sorted({int(user_id) for user_id in user_ids})
    parked = XapiStatement.objects.filter(state=XapiStatement.DEAD).exclude(event_name="")
    deleted = 0
    for start in range(0, len(wanted), _USERS_PER_SCAN):
        matches = Q()
        for user_id in wanted[start : start + _USERS_PER_SCAN]:
            for written in (str(user_id), json.dumps(str(user_id))):
                matches |= Q(statement__contains=f'"user_id":{written},') | Q(
                    statement__contains=f'"user_id":{written}}}'
                )
        doomed = [pk for pk, text in parked.filter(matches).values_list("pk", "statement") if _is_of(text, wanted)]
        deleted += XapiStatement.objects.filter(pk__in=doomed).delete()[0]
    return deleted


# Users whose parked events one query looks for: four text patterns each, and SQLite parses at most 1,000 terms.
_USERS_PER_SCAN = 100


def _is_of(text: str, user_ids: Sequence[int]) -> bool:
    """Whether a parked event's own user is one of these: a text match may be another key's ``user_id``."""
    try:
        return user_of_event(erb.event_from_text(text)) in user_ids
    except ValueError:  # no JSON: no user can be told
        return False


def transforming_steps() -> erb.XapiSteps:
    """
    ERB's xapi router's transformer, as this process configured it. Without one, or with ERB's circuit breaker
    (``XAPI_EVENTS_ENABLED``) off, events wait (the sink pauses as for a misconfigured ClickHouse) rather than
    be blamed: the worker's configuration is at fault, or an operator stopped xAPI for a while.
    """
    router = erb.xapi_router()
    if router is None:
        raise ClickHouseMisconfigured(
            f"event-routing-backends' {erb.TRANSFORMER_BACKEND}.{erb.XAPI_CHILD} tracking backend is missing in "
            "this worker: its xAPI events wait until it is configured"
        )
    if not erb.xapi_switched_on():
        raise ClickHouseMisconfigured(
            "event-routing-backends' XAPI_EVENTS_ENABLED is off in this worker: its xAPI events wait until it is on"
        )
    return erb.XapiSteps.of(router)


def raw_batch(rows: Sequence[tuple]) -> ColumnBatch:
    """One INSERT's worth of ``(event_id, emission_time, event)`` rows for the raw table."""
    values = list(zip(*rows)) if rows else [(), (), ()]
    return raw_table().batch([column.convert_all(each) for column, each in zip(RAW_COLUMNS, values)])
