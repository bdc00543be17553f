"""
Recording xAPI work for ClickHouse: an emitted tracking event (or a statement a history import could not
insert) becomes a row of the statements' queue, in the caller's transaction, and a drain makes and inserts
the statements into Aspects' raw table after commit.

What is sent where is the sink's (:mod:`aspects_sink.sinks.xapi_statements`); everything else is the
outbox's: leases, one INSERT per batch, backoff while ClickHouse is down, isolation and dead letters when
an event cannot be transformed or ClickHouse rejects data, drains woken after commit and the periodic sweep.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from django.utils import timezone

from aspects_sink import erb, outbox
from aspects_sink.models import XapiStatement
from aspects_sink.sinks.xapi_statements import XapiStatementSink

_EVENT_FIELDS = ("event_name", "emission_time", "statement")


def record_events(events: Iterable[dict]) -> int:
    """
    Queue emitted tracking events ERB admitted (:meth:`aspects_sink.erb.XapiSteps.admit`) in the caller's
    transaction, as text, one INSERT for all; a drain transforms them after commit. Return the events queued.
    """
    rows = [(event["name"], _emitted(event.get("timestamp")), erb.event_text(event)) for event in events]
    return outbox.queue(XapiStatementSink.name).insert(_EVENT_FIELDS, rows)


def _emitted(timestamp) -> datetime.datetime:
    """When the event was emitted, for the queue's listings (statements carry their own time)."""
    emitted = erb.as_emitted(timestamp)
    if not isinstance(emitted, datetime.datetime):
        return timezone.now()
    return emitted if emitted.tzinfo else emitted.replace(tzinfo=datetime.UTC)


def queue_rows(rows: Iterable[erb.StatementRow]) -> int:
    """Queue raw-table rows (statements already made) in the caller's transaction; a drain inserts them after commit."""
    return outbox.queue(XapiStatementSink.name).add(
        [XapiStatement(event_id=event_id, emission_time=emitted, statement=event) for event_id, emitted, event in rows]
    )
