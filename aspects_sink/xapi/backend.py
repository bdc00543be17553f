"""
The events routers ERB's ``xapi`` backend is rewired to (:mod:`aspects_sink.xapi.routing`).

Each event is transformed by the router's own processors, as ERB configured them (its allow-list,
then ``XApiProcessor`` with the transformer registry), and the resulting statements are recorded for
ClickHouse in the transaction that emitted the event. ERB's own routing to LRSs (``RouterConfiguration``
rows, with its batching and retries) goes on only for the routes listed in ``ASPECTS_SINK_XAPI_LRS_ROUTE_URLS``:
Aspects' Ralph route inserts into the same raw table, so by default no statement reaches ClickHouse twice.
"""

from __future__ import annotations

from django.db import transaction
from event_routing_backends.backends.async_events_router import AsyncEventsRouter
from event_routing_backends.backends.sync_events_router import SyncEventsRouter
from event_routing_backends.models import RouterConfiguration
from eventtracking.backends.routing import RoutingBackend
from eventtracking.processors.exceptions import EventEmissionExit

from aspects_sink import toggles
from aspects_sink.conf import aspects_settings
from aspects_sink.xapi import store


def statements_wanted(event_name: str) -> bool:
    """Whether ``ASPECTS_SINK_XAPI_EVENTS`` lets this event into ClickHouse (None: every event ERB allows)."""
    allowed = aspects_settings.ASPECTS_SINK_XAPI_EVENTS
    return allowed is None or event_name in allowed


class ClickHouseRouting:
    """
    Mixed into ERB's routers. ``process_event`` (ERB's) runs the processors: an event outside the
    allow-list, or without a transformer, yields no statement; a transformation that fails raises to
    event-tracking, which logs it with the event's name. The INSERT has a savepoint of its own: its
    failure cannot break the emitting request's transaction.
    """

    backend_name: str

    def send(self, event: dict) -> None:
        if toggles.xapi_enabled() and statements_wanted(event.get("name", "")):
            statements = self.process_event(event)
            with transaction.atomic():
                store.record(statements)
        if kept_lrs_routes(self.backend_name):
            super().send(event)

    def prepare_to_send(self, events, router_urls=None):
        """ERB's routing, to the kept LRS routes only (also when it replays failed events for given routes)."""
        kept = kept_lrs_routes(self.backend_name)
        if router_urls:
            kept = [url for url in kept if url in router_urls]
        if not kept:
            return {}
        return super().prepare_to_send(events, router_urls=kept)


def kept_lrs_routes(backend_name: str) -> list[str]:
    """The enabled LRS routes of ERB that still receive statements: those ``ASPECTS_SINK_XAPI_LRS_ROUTE_URLS`` lists."""
    listed = aspects_settings.ASPECTS_SINK_XAPI_LRS_ROUTE_URLS
    if not listed:
        return []
    routers = RouterConfiguration.get_enabled_routers(backend_name) or []
    return [router.route_url for router in routers if router.route_url in listed]


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
    """

    def send(self, event: dict) -> None:
        try:
            processed = self.process_event(event.copy())
        except EventEmissionExit:
            return
        self.send_to_backends(processed)
