"""
Point event-routing-backends' tracking backend at aspects-sink.

ERB's plugin settings write the whole ``EVENT_TRACKING_BACKENDS["event_transformer"]`` entry, its
production settings may replace ``EVENT_TRACKING_BACKENDS`` from ``ENV_TOKENS``, and the platform
applies plugins' settings in an order nobody controls. So the rewiring is not a settings step: it runs
in ``AppConfig.ready()``, on the final settings, whatever ran before, and rebuilds event-tracking's
tracker, which its own app built from the configuration before (docs/decisions/0005-xapi-to-clickhouse.rst).

The rewiring changes two engines and keeps everything else ERB configured (allow-lists, processors,
the caliper child, the operator's own backends):

* the ``xapi`` child's events router becomes aspects-sink's, of the same flavour (Celery or
  synchronous dispatch to LRSs);
* with ``ASPECTS_SINK_XAPI_IN_REQUEST``, ``event_transformer`` itself runs where the event is
  emitted instead of in one Celery task per event: the request runs ERB's filters and records the raw
  event in the emitting transaction, so a broker outage cannot lose it, and the drain makes its
  statements (:mod:`aspects_sink.sinks.xapi_statements`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from eventtracking import tracker
from eventtracking.django.django_tracker import override_default_tracker

from aspects_sink import toggles
from aspects_sink.conf import PluginSettings
from aspects_sink.erb import TRANSFORMER_BACKEND, XAPI_CHILD
from aspects_sink.xapi.backend import ClickHouseRouting

log = logging.getLogger(__name__)

ERB_ROUTERS = {
    "event_routing_backends.backends.async_events_router.AsyncEventsRouter": (
        "aspects_sink.xapi.backend.AsyncClickHouseEventsRouter"
    ),
    "event_routing_backends.backends.sync_events_router.SyncEventsRouter": (
        "aspects_sink.xapi.backend.SyncClickHouseEventsRouter"
    ),
}
# ERB's XAPI_AGENT_IFI_TYPE that names the actor by the anonymous external id, as Aspects' models expect.
ANONYMOUS_ACTOR = "external_id"
# The logger ERB writes each statement it makes to (event_routing_backends.processors.xapi.transformer_processor).
ERB_STATEMENTS_LOG = "xapi_tracking"
PER_EVENT_TASK_ENGINE = "eventtracking.backends.async_routing.AsyncRoutingBackend"
IN_PROCESS_ENGINE = "aspects_sink.xapi.backend.InProcessRoutingBackend"


def route_xapi_to_clickhouse(config: Any) -> bool:
    """
    Rewire ERB's ``event_transformer`` in ``config`` (``django.conf.settings``, or any object with the
    same attributes); idempotent. Returns whether anything changed. Does nothing when
    ``ASPECTS_SINK_XAPI_ENABLED`` is off or ERB's backend is not configured; an ``xapi`` child with an
    engine of the operator's own is left alone.
    """
    options = PluginSettings(config)
    if not options.ASPECTS_SINK_XAPI_ENABLED:
        return False
    backends = getattr(config, "EVENT_TRACKING_BACKENDS", None) or {}
    transformer = copy.deepcopy(backends.get(TRANSFORMER_BACKEND))
    xapi = (transformer or {}).get("OPTIONS", {}).get("backends", {}).get(XAPI_CHILD)
    if not xapi:
        return False
    changed = False
    if xapi.get("ENGINE") in ERB_ROUTERS:
        xapi["ENGINE"] = ERB_ROUTERS[xapi["ENGINE"]]
        changed = True
    if options.ASPECTS_SINK_XAPI_IN_REQUEST and transformer.get("ENGINE") == PER_EVENT_TASK_ENGINE:
        transformer["ENGINE"] = IN_PROCESS_ENGINE
        transformer["OPTIONS"].pop("backend_name", None)  # the Celery task's lookup key; RoutingBackend takes none
        changed = True
    if changed:
        config.EVENT_TRACKING_BACKENDS = {**backends, TRANSFORMER_BACKEND: transformer}
    return changed


def is_routed_to_clickhouse(config: Any) -> bool:
    """Whether the ``xapi`` child of ERB's backend is one of aspects-sink's routers."""
    transformer = (getattr(config, "EVENT_TRACKING_BACKENDS", None) or {}).get(TRANSFORMER_BACKEND) or {}
    xapi = transformer.get("OPTIONS", {}).get("backends", {}).get(XAPI_CHILD) or {}
    return xapi.get("ENGINE") in ERB_ROUTERS.values()


def wire_tracker() -> None:
    """
    At ``ready()``: rewire the final settings, and rebuild the default tracker if event-tracking built it
    from the configuration before the rewiring (its app is ready before plugin apps).
    """
    route_xapi_to_clickhouse(settings)
    if not is_routed_to_clickhouse(settings):
        if toggles.xapi_enabled():
            log.info("aspects_sink: event-routing-backends' xapi backend is not configured; no xAPI to ClickHouse")
        return
    check_actor_is_anonymous(settings)
    statements_log = logging.getLogger(ERB_STATEMENTS_LOG)
    if not any(isinstance(each, StatementsGoToClickHouse) for each in statements_log.filters):
        statements_log.addFilter(StatementsGoToClickHouse())
    if tracker.TRACKERS.get(tracker.DEFAULT_TRACKER_NAME) is not None and not _live_tracker_is_wired():
        override_default_tracker()


class StatementsGoToClickHouse(logging.Filter):
    """
    Drops the line ERB logs for each statement it makes (``xapi_tracking``, ``XAPI_EVENT_LOGGING_ENABLED``, on by
    default) while aspects-sink routes statements to ClickHouse. On Tutor's Vector path those lines are how
    statements reach ClickHouse: with both, each statement would be inserted twice (and Aspects' materialized views
    fire twice), and once more for every retry of a drain's batch, which makes its statements again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not toggles.xapi_enabled()


def check_actor_is_anonymous(config: Any) -> None:
    """
    Refuse to start when ERB would name actors by a personal identifier (``mbox``: the email,
    ``mbox_sha1sum``: its hash): statements would carry it into ClickHouse, where it can be neither left out
    with ASPECTS_ENABLE_PII off nor found again once the account is retired and renamed. Aspects identifies
    actors by the anonymous external id, which retirement unlinks from the learner.
    """
    identifier = getattr(config, "XAPI_AGENT_IFI_TYPE", ANONYMOUS_ACTOR)
    if identifier != ANONYMOUS_ACTOR:
        raise ImproperlyConfigured(
            f"aspects-sink: XAPI_AGENT_IFI_TYPE is {identifier!r}, so xAPI statements would carry the learner's "
            f"personal identifier into ClickHouse. Set XAPI_AGENT_IFI_TYPE to {ANONYMOUS_ACTOR!r} (Aspects' "
            "default), or turn ASPECTS_SINK_XAPI_ENABLED off to keep statements out of ClickHouse."
        )


def _live_tracker_is_wired() -> bool:
    transformer = tracker.get_tracker().backends.get(TRANSFORMER_BACKEND)
    return isinstance(getattr(transformer, "backends", {}).get(XAPI_CHILD), ClickHouseRouting)
