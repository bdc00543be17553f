"""
Settings for running platform-plugin-aspects (the existing plugin) on the stand-in LMS, for the backfill
benchmark. Used only from its own virtualenv (``.benchmarks/legacy-py3.X``), where aspects-sink is not
installed, so the one plugin app loaded from the ``lms.djangoapp`` entry point is the existing plugin.

It layers as ``lms.envs.common`` does, with one addition edx-platform has and the devstack does not:
``MAKO_TEMPLATE_DIRS_BASE``, which the existing plugin's settings append to. The ClickHouse connection
comes from the environment the benchmark sets (the devstack endpoint, database ``event_sink_legacy``).
"""

import os

import devstack_settings
from edx_django_utils.plugins import add_plugins, get_plugin_apps

globals().update(devstack_settings.shared_settings("lms"))

MAKO_TEMPLATE_DIRS_BASE = []
INSTALLED_APPS = devstack_settings.platform_apps()
INSTALLED_APPS.extend(get_plugin_apps("lms.djangoapp"))

add_plugins(__name__, "lms.djangoapp", "common")

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
