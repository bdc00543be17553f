"""
The events routers ERB's ``xapi`` backend is rewired to (:mod:`aspects_sink.xapi.routing`).

Each event goes through the router's filters, as ERB configured them (its allow-list, and whether its
transformer registry has a transformer for the event), and an event they admit is recorded for ClickHouse,
as text, in the transaction that emitted it; the drain makes its statements with the router's transformer
(``XApiProcessor``), in batches (:mod:`aspects_sink.erb`). ERB's own routing to LRSs (``RouterConfiguration``
rows, with its batching and retries) goes on only for the routes listed in ``ASPECTS_SINK_XAPI_LRS_ROUTE_URLS``:
Aspects' Ralph route inserts into the same raw table, so by default no statement reaches ClickHouse twice.
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django_redis import get_redis_connection
from event_routing_backends.backends.async_events_router import AsyncEventsRouter
from event_routing_backends.backends.events_router import EVENTS_ROUTER_QUEUE_FORMAT
from event_routing_backends.backends.sync_events_router import SyncEventsRouter
from event_routing_backends.models import RouterConfiguration
from eventtracking.backends.routing import RoutingBackend
from eventtracking.processors.exceptions import EventEmissionExit, NoBackendEnabled, NoTransformerImplemented

from aspects_sink import erb, toggles
from aspects_sink.conf import aspects_settings
from aspects_sink.xapi import store

log = logging.getLogger(__name__)


def statements_wanted(event_name: str) -> bool:
    """Whether ``ASPECTS_SINK_XAPI_EVENTS`` lets this event into ClickHouse (None: every event ERB allows)."""
    allowed = aspects_settings.ASPECTS_SINK_XAPI_EVENTS
    return allowed is None or event_name in allowed


class ClickHouseRouting:
    """
    Mixed into ERB's routers. The request pays only for the filters and one INSERT: an event outside the
    allow-list, or without a transformer, is not recorded; one that is gets its statements in the drain. A
    failed INSERT is logged and counted, and leaves the emitting request's transaction as it was
    (:meth:`aspects_sink.outbox.Queue.insert`).
    """

    backend_name: str
    processors: list

    def send(self, event: dict) -> None:
        if toggles.xapi_enabled() and statements_wanted(event.get("name", "")):
            events = erb.XapiSteps.of(self).admit(event)
            if events:
                store.record_events(events)
        if kept_lrs_routes(self.backend_name):
            super().send(event)

    def prepare_to_send(self, events, router_urls=None):
        """ERB's routing, to the kept LRS routes only (also when it replays failed events for given routes)."""
        kept = kept_lrs_routes(self.backend_name)
        if router_urls:
            kept = [url for url in kept if url in router_urls]
        if not kept:
            # Reached only from outside this router's own send (which calls ERB's only for kept routes): ERB's
            # transform_tracking_logs to LRS, say, which would otherwise report sending what nobody receives.
            log.warning(
                "aspects_sink: event-routing-backends was asked to send %d events to LRS routes, but no LRS route "
                "receives statements while aspects-sink routes xAPI to ClickHouse (ASPECTS_SINK_XAPI_LRS_ROUTE_URLS); "
                "nothing was sent. To import tracking logs into ClickHouse, run aspects_sink_xapi_history",
                len(events),
            )
            return {}
        return super().prepare_to_send(events, router_urls=kept)


def kept_lrs_routes(backend_name: str) -> list[str]:
    """The enabled LRS routes of ERB that still receive statements: those ``ASPECTS_SINK_XAPI_LRS_ROUTE_URLS`` lists."""
    listed = aspects_settings.ASPECTS_SINK_XAPI_LRS_ROUTE_URLS
    if not listed:
        return []
    routers = RouterConfiguration.get_enabled_routers(backend_name) or []
    return [router.route_url for router in routers if router.route_url in listed]


def take_over_erb_batch_queue() -> int:
    """
    Record for ClickHouse the events ERB's batching left in its Redis queue; return how many were recorded.

    With ``EVENT_ROUTING_BACKEND_BATCHING_ENABLED`` (as Tutor runs Aspects) ERB's route holds events in a Redis list
    until a batch is full or due, and only its next ``send`` flushes them. Once the site routes xAPI through
    aspects-sink, nothing sends them any more: the events it held at the switch, and those pods still on ERB's
    route queue during a rolling deploy, would wait there for ever. The sweep takes them over: the list is renamed
    to a key of aspects-sink's at once (pods pushing meanwhile start a new one, taken by the next sweep), its events
    are recorded as emitted ones are, and the key is deleted once they are committed; should recording fail, the
    key waits for the next sweep, which records it first (an event recorded twice makes the same statement, which
    collapses). An entry that is no event is kept under another key of aspects-sink's, and counted in a WARNING.

    Nothing is taken while an LRS route is kept (ERB's own batching flushes that list to it) or while ERB's
    circuit breaker is off (ERB would make no statement of them: they wait). It never raises: the sweep goes on.
    """
    try:
        router = erb.xapi_router()
        if router is None or not aspects_settings.EVENT_ROUTING_BACKEND_BATCHING_ENABLED:
            return 0
        if not toggles.xapi_enabled() or not erb.xapi_switched_on() or kept_lrs_routes(router.backend_name):
            return 0
        queue_name = EVENTS_ROUTER_QUEUE_FORMAT.format(router.backend_name)
        taken = f"aspects_sink:taken:{queue_name}"
        redis = get_redis_connection()
        if not redis.exists(taken) and not redis.exists(queue_name):
            return 0
        if not redis.exists(taken):  # else a take-over that did not finish: its events are recorded first
            redis.rename(queue_name, taken)
        held = redis.lrange(taken, 0, -1)
    except Exception as error:  # no django-redis cache, Redis or the LMS database down: ERB's batching fails too
        log.warning("aspects_sink: could not take over event-routing-backends' batch queue: %s", error)
        return 0
    events, unreadable = [], []
    for text in reversed(held):  # ERB pushes to the head: the oldest last
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        (events if isinstance(event, dict) else unreadable).append(event if isinstance(event, dict) else text)
    try:
        steps = erb.XapiSteps.of(router)
        admitted = [each for event in events if statements_wanted(event.get("name", "")) for each in steps.admit(event)]
        with transaction.atomic():
            if store.record_events(admitted) != len(admitted):  # logged already; nothing of it is committed
                raise RuntimeError("the events could not be recorded")
    except Exception as error:
        log.error(
            "aspects_sink: %d events of %s wait in %s for the next sweep: %s", len(held), queue_name, taken, error
        )
        return 0
    try:
        if unreadable:
            redis.rpush(f"aspects_sink:unreadable:{queue_name}", *unreadable)
            log.warning(
                "aspects_sink: %d entries of %s are no events; kept in aspects_sink:unreadable:%s",
                len(unreadable), queue_name, queue_name,
            )  # fmt: skip
        redis.delete(taken)
    except Exception as error:  # recorded: taken again by the next sweep, the statements collapse
        log.warning("aspects_sink: could not clear %s after recording its events: %s", taken, error)
    log.info("aspects_sink: recorded %d events from event-routing-backends' batch queue", len(admitted))
    return len(admitted)


class AsyncClickHouseEventsRouter(ClickHouseRouting, AsyncEventsRouter):
    """Replaces ERB's ``AsyncEventsRouter``: LRSs still get the event through ERB's Celery tasks."""


class SyncClickHouseEventsRouter(ClickHouseRouting, SyncEventsRouter):
    """Replaces ERB's ``SyncEventsRouter`` (event-bus consumers): LRSs still get the event synchronously."""


class InProcessRoutingBackend(RoutingBackend):
    """
    ERB's ``event_transformer`` run where the event is emitted (``ASPECTS_SINK_XAPI_IN_REQUEST``).

    The tracker has deep-copied the event already; a shallow copy is enough to keep the children's
    top-level changes (ERB's LRS batching rewrites the timestamp) from the platform's other tracking
    backends, and copying every event a second time in full would cost a tenth of the emitting time.
    A child ERB makes nothing with (its ``caliper`` router, switched off by default) is not called: in
    the request it would cost a cache round trip per event for ERB's routing configuration.
    """

    def send(self, event: dict) -> None:
        try:
            processed = self.process_event(event.copy())
        except EventEmissionExit:
            return
        self.send_to_backends(processed)

    def send_to_backends(self, event: dict) -> None:
        """event-tracking's loop, less the children :func:`aspects_sink.erb.switched_off` names."""
        for name, backend in self.backends.items():
            if erb.switched_off(backend):
                continue
            try:
                backend.send(event)
            except (NoTransformerImplemented, NoBackendEnabled) as error:
                log.info("aspects_sink: %s tracking backend made nothing of %s: %r", name, event.get("name"), error)
            except Exception:  # as event-tracking: a backend's failure never reaches the platform
                log.exception("aspects_sink: %s tracking backend failed on the %s event", name, event.get("name"))
