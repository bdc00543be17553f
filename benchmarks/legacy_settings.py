"""
Settings for running platform-plugin-aspects (the existing plugin) on the stand-in LMS or CMS, for the
backfill and live-path benchmarks. Used only from its own virtualenv (``.benchmarks/legacy-py3.X``), where
aspects-sink is not installed, so the one plugin app loaded from the ``<service>.djangoapp`` entry point is
the existing plugin. The service is ``SERVICE_VARIANT`` (default ``lms``): its course publish receiver is
connected in the CMS only, as in edx-platform.

It layers as ``lms.envs.common`` does, with two additions edx-platform has and the devstack does not:
``MAKO_TEMPLATE_DIRS_BASE``, which the existing plugin's settings append to, and ``FEATURES``, which its
course dump task reads (``CUSTOM_COURSES_EDX``). The ClickHouse connection comes from the environment the
benchmark sets (the devstack endpoint, database ``event_sink_legacy``).
"""

import os

import devstack_settings
from edx_django_utils.plugins import add_plugins, get_plugin_apps

SERVICE = os.environ.get("SERVICE_VARIANT", "lms")
globals().update(devstack_settings.shared_settings(SERVICE))

MAKO_TEMPLATE_DIRS_BASE = []
FEATURES = {}  # edx-platform's feature flags, all at their defaults (off)
INSTALLED_APPS = devstack_settings.platform_apps()
INSTALLED_APPS.extend(get_plugin_apps(f"{SERVICE}.djangoapp"))

add_plugins(__name__, f"{SERVICE}.djangoapp", "common")

EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
    "url": os.environ["ASPECTS_SINK_CLICKHOUSE_URL"],
    "username": os.environ.get("ASPECTS_SINK_CLICKHOUSE_USERNAME", "default"),
    "password": os.environ.get("ASPECTS_SINK_CLICKHOUSE_PASSWORD", ""),
    "database": os.environ.get("ASPECTS_SINK_CLICKHOUSE_DATABASE", "event_sink_legacy"),
    # Its inserts into a table partitioned by user_id % 100 take seconds each on the embedded engine.
    "timeout_secs": 600,
}
ASPECTS_ENABLE_PII = True
EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED = True
EVENT_SINK_CLICKHOUSE_USER_PROFILE_ENABLED = True
EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED = True
EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = True
