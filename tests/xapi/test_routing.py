"""
aspects-sink configures event-routing-backends whatever order the platform applies the two plugins'
settings in, keeps everything ERB configured, leaves ERB alone when switched off, and wires the tracker of
a running process.
"""

from __future__ import annotations

import itertools
import types

import pytest
from event_routing_backends.settings import common as erb_common
from event_routing_backends.settings import production as erb_production
from eventtracking import tracker

from aspects_sink.settings import common as aspects_common
from aspects_sink.settings import production as aspects_production
from aspects_sink.xapi import routing
from aspects_sink.xapi.backend import ClickHouseRouting, InProcessRoutingBackend

ERB_FIRST = ((erb_common, aspects_common), (erb_production, aspects_production))
ASPECTS_FIRST = ((aspects_common, erb_common), (aspects_production, erb_production))
WHITELIST = "eventtracking.processors.whitelist.NameWhitelistProcessor"
XAPI_PROCESSOR = "event_routing_backends.processors.xapi.transformer_processor.XApiProcessor"


def platform_settings(order, **env_tokens) -> types.SimpleNamespace:
    """Settings as edx-platform builds them: every plugin's common settings, then every plugin's production."""
    settings = types.SimpleNamespace(
        LMS_ROOT_URL="http://localhost:18000",
        EVENT_TRACKING_BACKENDS={},
        CELERY_BEAT_SCHEDULE={},
        ENV_TOKENS=env_tokens,
    )
    for plugin in itertools.chain(*order):
        plugin.plugin_settings(settings)
    return settings


def transformer(settings) -> dict:
    return settings.EVENT_TRACKING_BACKENDS[routing.TRANSFORMER_BACKEND]


@pytest.mark.parametrize("order", [ERB_FIRST, ASPECTS_FIRST], ids=["erb-settings-first", "aspects-settings-first"])
def test_erb_xapi_backend_routes_to_clickhouse_whichever_plugin_settings_ran_first(order):
    settings = platform_settings(order)

    assert routing.route_xapi_to_clickhouse(settings) is True  # what AspectsSinkConfig.ready() does
    backend = transformer(settings)
    xapi = backend["OPTIONS"]["backends"]["xapi"]
    assert xapi["ENGINE"] == "aspects_sink.xapi.backend.AsyncClickHouseEventsRouter"
    assert backend["ENGINE"] == routing.IN_PROCESS_ENGINE
    assert "backend_name" not in backend["OPTIONS"]
    # ERB's own configuration is kept: its allow-list, then its transformer; the caliper child untouched.
    assert [processor["ENGINE"] for processor in xapi["OPTIONS"]["processors"]] == [WHITELIST, XAPI_PROCESSOR]
    assert set(xapi["OPTIONS"]["processors"][0]["OPTIONS"]["whitelist"]) == set(
        settings.EVENT_TRACKING_BACKENDS_ALLOWED_XAPI_EVENTS
    )
    assert backend["OPTIONS"]["backends"]["caliper"]["ENGINE"].endswith(".AsyncEventsRouter")
    assert settings.XAPI_EVENTS_ENABLED is True
    assert routing.route_xapi_to_clickhouse(settings) is False  # idempotent


def test_an_operators_tracking_backends_from_env_tokens_are_rewired_and_kept():
    erb_config = platform_settings(ERB_FIRST).EVENT_TRACKING_BACKENDS
    operators = {**erb_config, "tracking_logs": {"ENGINE": "eventtracking.backends.logger.LoggerBackend"}}
    settings = platform_settings(ASPECTS_FIRST, EVENT_TRACKING_BACKENDS=operators)

    routing.route_xapi_to_clickhouse(settings)

    assert routing.is_routed_to_clickhouse(settings)
    assert settings.EVENT_TRACKING_BACKENDS["tracking_logs"] == operators["tracking_logs"]


def test_switched_off_erb_keeps_its_own_routing():
    settings = platform_settings(ERB_FIRST, ASPECTS_SINK_XAPI_ENABLED=False)

    assert routing.route_xapi_to_clickhouse(settings) is False
    assert transformer(settings)["ENGINE"] == routing.PER_EVENT_TASK_ENGINE
    assert not routing.is_routed_to_clickhouse(settings)


def test_without_in_request_transformation_erb_keeps_one_celery_task_per_event():
    settings = platform_settings(ERB_FIRST, ASPECTS_SINK_XAPI_IN_REQUEST=False)

    routing.route_xapi_to_clickhouse(settings)

    assert transformer(settings)["ENGINE"] == routing.PER_EVENT_TASK_ENGINE
    assert transformer(settings)["OPTIONS"]["backend_name"] == routing.TRANSFORMER_BACKEND
    assert routing.is_routed_to_clickhouse(settings)


def test_event_bus_consumers_keep_synchronous_lrs_dispatch():
    settings = platform_settings(ERB_FIRST)
    xapi = transformer(settings)["OPTIONS"]["backends"]["xapi"]
    xapi["ENGINE"] = "event_routing_backends.backends.sync_events_router.SyncEventsRouter"

    routing.route_xapi_to_clickhouse(settings)

    assert transformer(settings)["OPTIONS"]["backends"]["xapi"]["ENGINE"].endswith(".SyncClickHouseEventsRouter")


def test_an_xapi_backend_of_the_operators_own_is_left_alone():
    settings = platform_settings(ERB_FIRST)
    transformer(settings)["OPTIONS"]["backends"]["xapi"]["ENGINE"] = "site.routing.MyRouter"

    routing.route_xapi_to_clickhouse(settings)

    assert transformer(settings)["OPTIONS"]["backends"]["xapi"]["ENGINE"] == "site.routing.MyRouter"


def test_the_tracker_of_this_process_was_rebuilt_with_the_clickhouse_router():
    """event-tracking built its tracker before aspects-sink's ready(); it has been rebuilt since."""
    backend = tracker.get_tracker().backends[routing.TRANSFORMER_BACKEND]
    assert isinstance(backend.backends["xapi"], ClickHouseRouting)
    assert isinstance(backend, InProcessRoutingBackend)
