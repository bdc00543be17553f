"""
event-routing-backends (ERB) as the xAPI route and the history import use it: the ``xapi`` events router of
the tracker, its processors split in two, tracking events as text and back, statements as raw-table rows.

ERB's ``xapi`` router runs its processors in order: the filters (its allow-list), then the transformer
(``XApiProcessor`` with the transformer registry). The filters cost next to nothing and decide whether an
event becomes a statement at all; the transformer costs a millisecond or so (lookups, tincan's objects, JSON).
So the request that emits an event only runs the filters (:meth:`XapiSteps.admit`) and records the event
as text in its transaction (:func:`event_text`); the drain transforms the events it takes, a batch at a time,
with :func:`transform`, the same function the history import transforms tracking-log lines with
(docs/decisions/0005-xapi-to-clickhouse.rst). A statement's id is a uuid5 of its actor, verb and the text
of the event's time, so the event's time is handed to ERB's transformers as ERB's own route on the site hands
it (:func:`as_routed`): the statements, ids included, are those ERB makes of the emitted event there.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import DatabaseError
from event_routing_backends.processors.caliper import CALIPER_EVENTS_ENABLED
from event_routing_backends.processors.caliper.transformer_processor import CaliperProcessor
from event_routing_backends.processors.mixins.base_transformer_processor import BaseTransformerProcessorMixin
from event_routing_backends.processors.xapi import XAPI_EVENTS_ENABLED
from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
from eventtracking import tracker

from aspects_sink.conf import aspects_settings

TRANSFORMER_BACKEND = "event_transformer"
XAPI_CHILD = "xapi"

# ERB's transformer processors, and the toggle (its circuit breaker) without which each makes nothing.
_SWITCHES = ((XApiProcessor, XAPI_EVENTS_ENABLED), (CaliperProcessor, CALIPER_EVENTS_ENABLED))

# ``(event_id, emission_time, event)``: one row of the raw xAPI table.
StatementRow = tuple[str, datetime.datetime, str]


class TransformationError(ValueError):
    """ERB failed to transform an event; the message names the event, ``reason`` is ERB's error."""

    def __init__(self, event: dict, reason: str):
        super().__init__(f"{describe(event)}: {reason}")
        self.reason = reason


def xapi_router() -> Any | None:
    """The ``xapi`` child of the tracker's ``event_transformer`` backend (ERB's router, or ours), if configured."""
    transformer = tracker.get_tracker().backends.get(TRANSFORMER_BACKEND)
    return getattr(transformer, "backends", {}).get(XAPI_CHILD)


@dataclass(frozen=True)
class XapiSteps:
    """
    A router's processors, split before its first transformer: ``filters`` run where the event is emitted,
    ``transformers`` (the transformer and any processor after it) where the statements are made.
    """

    filters: tuple
    transformers: tuple

    @classmethod
    def of(cls, router) -> XapiSteps:
        return _steps(router)

    def admit(self, event: dict) -> list[dict]:
        """
        The events ERB would transform: the filters' output, less events it has no transformer for or makes no
        statement of while ``XAPI_EVENTS_ENABLED`` is off (ERB's circuit breaker). Lists, as ERB's processors take.
        """
        events = [event]
        for processor in self.filters:
            events = processor(events)
        first = self.transformers[0] if self.transformers else None
        registry = getattr(first, "registry", None)
        if registry is not None:
            if not xapi_switched_on():
                return []
            events = [each for each in events if each.get("name") in registry.mapping]
        return events

    def transform(self, event: dict) -> list[dict]:
        """The statements ERB's transformers make of one admitted event (raises what they raise)."""
        events = [event]
        for processor in self.transformers:
            events = processor(events)
        return events


def xapi_switched_on() -> bool:
    """Whether ERB's circuit breaker lets its xAPI processor make statements (``XAPI_EVENTS_ENABLED``)."""
    return XAPI_EVENTS_ENABLED.is_enabled()


def switched_off(backend) -> bool:
    """
    Whether a tracking backend is an ERB router that makes nothing of any event now: its transformer's
    toggle is off (``CALIPER_EVENTS_ENABLED``, off by default; ``XAPI_EVENTS_ENABLED``).
    """
    for processor in getattr(backend, "processors", ()):
        for kind, toggle in _SWITCHES:
            if isinstance(processor, kind) and not toggle.is_enabled():
                return True
    return False


@cache
def _steps(router) -> XapiSteps:
    processors = tuple(router.processors)
    split = next(
        (index for index, processor in enumerate(processors) if isinstance(processor, BaseTransformerProcessorMixin)),
        len(processors),
    )
    return XapiSteps(processors[:split], processors[split:])


def transform(steps: XapiSteps, event: dict) -> list[StatementRow]:
    """
    The raw-table rows of the statements ERB makes of ``event`` (whose time is given back as a datetime first),
    none if it makes none (a statement without an object id). Raises TransformationError, naming the event,
    when a transformer fails, and Django's DatabaseError as it is when the LMS database does (the caller waits
    and tries again: docs/decisions/0009).
    """
    event["timestamp"] = as_routed(event.get("timestamp"))
    try:
        return [statement_row(statement) for statement in steps.transform(event)]
    except DatabaseError:
        raise  # ERB's lookups query the LMS database: its failing (a deadlock, a lost connection) is not the event's
    except Exception as error:  # whatever else a transformer raises is about this event
        raise TransformationError(event, f"{type(error).__name__}: {error}") from error


def describe(event: dict) -> str:
    """How errors name an event: its name and time."""
    return f"{event.get('name') or '?'} event of {event.get('timestamp') or '?'}"


def as_routed(timestamp):
    """
    The event's time as ERB's own route on this site hands it to its transformers: the tracker's datetime when
    ERB sends each event, its ISO text when ERB batches them (``EVENT_ROUTING_BACKEND_BATCHING_ENABLED``, on as
    Tutor runs Aspects: its Redis queue carries events as JSON).

    ERB derives a statement's id from the text of the time it is given (``2026-12-01 13:22:04.333397+00:00``
    from a datetime, ``2026-12-01T13:22:04.333397+00:00`` from ISO text), so the same event gets two ids
    depending on the route. Statements the site's ERB wrote before it switched carry its route's ids; handing
    the time as that route does, a history overlapping them (or the live route's own) collapses into them.
    """
    emitted = as_emitted(timestamp)
    if isinstance(emitted, datetime.datetime) and aspects_settings.EVENT_ROUTING_BACKEND_BATCHING_ENABLED:
        return emitted.isoformat()  # as ERB's EventsRouter.queue_event writes it
    return emitted


def as_emitted(timestamp):
    """The event's time as the tracker emitted it: a datetime, from the ISO text a stored event or a log holds."""
    if not isinstance(timestamp, str):
        return timestamp
    try:
        return datetime.datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp


def _jsonable(value):
    """Times as ISO text (read back by :func:`as_emitted`), anything else JSON lacks as its text."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def event_text(event: dict) -> str:
    """
    An emitted event as compact JSON, as tracking logs and ERB's own batching carry it. Non-ASCII text is
    escaped: a lone surrogate (a browser may send ``"\\ud800"``) is then stored as well as any other text.
    """
    return json.dumps(event, separators=(",", ":"), default=_jsonable)


def event_from_text(text: str) -> dict:
    """An event as :func:`event_text` wrote it (its time still text: :func:`transform` makes it a datetime)."""
    return json.loads(text)


def statement_row(statement: dict) -> StatementRow:
    """
    ``(event_id, emission_time, event)`` of one statement as ERB builds it.

    The JSON keeps non-ASCII text as it is, unless the statement holds a lone surrogate: no database stores
    that as UTF-8, so such a statement is written with JSON escapes instead, which read back as the very same
    statement.
    """
    text = json.dumps(statement, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(statement, separators=(",", ":"))
    return statement["id"], emission_time(statement["timestamp"]), text


def emission_time(timestamp: str) -> datetime.datetime:
    """A statement's time as the raw table's ``emission_time``: UTC where the statement names no offset."""
    emitted = datetime.datetime.fromisoformat(timestamp)
    if emitted.tzinfo is None:
        emitted = emitted.replace(tzinfo=datetime.UTC)
    return emitted
