"""
Every setting aspects-sink reads, its default, and the one accessor the code reads them through.

Defaults live here and nowhere else: :mod:`aspects_sink.settings.common` copies them into the LMS/CMS
settings, :mod:`aspects_sink.settings.production` merges the operator's ``ENV_TOKENS`` over them, and the
code reads ``aspects_settings.NAME`` (as Django REST framework's ``api_settings``), which falls back to the
default when a settings module never ran the plugin's settings (a worker started with other settings, a
test). Mapping settings are merged over their default key by key, so a site that sets only the ClickHouse
password keeps the default URL and user, however its configuration reached the settings module.

Names shared with platform-plugin-aspects (``EVENT_SINK_CLICKHOUSE_*``, ``ASPECTS_ENABLE_PII``) keep
their meaning, so a site switching plugins keeps its Tutor configuration; names of our own start with
``ASPECTS_SINK_``. Each setting carries an edx-toggles setting annotation.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings as django_settings

# Every object this plugin can send, and the platform model it reads. Sites on a fork can point these at
# other modules; nothing in the plugin imports edx-platform models directly (aspects_sink.edx_platform).
DEFAULT_MODEL_CONFIG = {
    "auth_user": {"module": "django.contrib.auth.models", "model": "User"},
    "user_profile": {"module": "common.djangoapps.student.models", "model": "UserProfile"},
    "course_enrollment": {"module": "common.djangoapps.student.models", "model": "CourseEnrollment"},
    "course_overviews": {
        "module": "openedx.core.djangoapps.content.course_overviews.models",
        "model": "CourseOverview",
    },
    "external_id": {"module": "openedx.core.djangoapps.external_user_ids.models", "model": "ExternalId"},
    "external_id_type": {"module": "openedx.core.djangoapps.external_user_ids.models", "model": "ExternalIdType"},
    "custom_course_edx": {"module": "lms.djangoapps.ccx.models", "model": "CustomCourseForEdX"},
    # Content tags: openedx-learning's tagging app, at the path of the release edx-platform pins (0.30);
    # openedx-core (its successor) moved the models to ``openedx_tagging.models``, where they are then found
    # (aspects_sink.edx_platform.MOVED_MODULES).
    "tag": {"module": "openedx_tagging.core.tagging.models", "model": "Tag"},
    "taxonomy": {"module": "openedx_tagging.core.tagging.models", "model": "Taxonomy"},
    "object_tag": {"module": "openedx_tagging.core.tagging.models", "model": "ObjectTag"},
}

# .. toggle_name: EVENT_SINK_CLICKHOUSE_<SINK>_ENABLED
# .. toggle_implementation: DjangoSetting
# .. toggle_default: True
# .. toggle_description: Send the objects of sink <SINK> (COURSE_OVERVIEWS, USER_PROFILE, EXTERNAL_ID,
#   COURSE_ENROLLMENT, TAG, TAXONOMY, OBJECT_TAG, USER_RETIREMENT, or a site's own sink) to ClickHouse, live
#   and in backfills. USER_PROFILE and EXTERNAL_ID, whose rows are personal data, have no default: unset, they
#   follow ASPECTS_ENABLE_PII; set True, they turn personal data on (what Tutor's ASPECTS_ENABLE_PII renders).
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-21
SINK_SETTING_TEMPLATE = "EVENT_SINK_CLICKHOUSE_{}_ENABLED"
BUILTIN_SINK_NAMES = (
    "course_overviews",
    "user_profile",
    "external_id",
    "course_enrollment",
    "tag",
    "taxonomy",
    "object_tag",
    "user_retirement",
)
# Built-in sinks whose rows are personal data (``Sink.pii``). Their switches have no default: set True, a switch
# is the site's consent to personal data, as Tutor's ASPECTS_ENABLE_PII renders it (aspects_sink.toggles); unset,
# ``ASPECTS_ENABLE_PII`` decides.
PERSONAL_SINK_NAMES = ("user_profile", "external_id")

DEFAULTS: dict[str, Any] = {
    # .. setting_name: EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
    # .. setting_default: {"url": "http://clickhouse:8123", "username": "ch_lms", "password": "",
    #   "database": "event_sink", "timeout_secs": 5, "read_timeout_secs": 30, "verify": True, "ca_cert": None,
    #   "client_cert": None, "client_cert_key": None}
    # .. setting_description: The ClickHouse connection: ``url`` is http(s)://host:port of a server, or
    #   chdb://<path> for an embedded engine; TLS through ``verify`` (True, False or a CA bundle path),
    #   ``ca_cert`` and a client certificate. ``timeout_secs`` bounds connecting; an answer is awaited for the
    #   longer of ``timeout_secs`` and ``read_timeout_secs``. Keys left out keep their default.
    "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG": {
        "url": "http://clickhouse:8123",
        "username": "ch_lms",
        "password": "",
        "database": "event_sink",
        "timeout_secs": 5,
        "read_timeout_secs": 30,
        "verify": True,
        "ca_cert": None,
        "client_cert": None,
        "client_cert_key": None,
    },
    # .. setting_name: EVENT_SINK_CLICKHOUSE_MODEL_CONFIG
    # .. setting_default: the edx-platform models (see aspects_sink.conf.DEFAULT_MODEL_CONFIG)
    # .. setting_description: Where each platform model is imported from ({"module": ..., "model": ...} per
    #   name), for forks that moved them. Names left out keep their default.
    "EVENT_SINK_CLICKHOUSE_MODEL_CONFIG": DEFAULT_MODEL_CONFIG,
    # .. setting_name: EVENT_SINK_CLICKHOUSE_PII_MODELS
    # .. setting_default: ["user_profile", "external_id"]
    # .. setting_description: Sinks whose rows are deleted when their user is retired. Sinks with personal
    #   columns that are not listed (course_enrollment.username) have those columns blanked instead.
    "EVENT_SINK_CLICKHOUSE_PII_MODELS": ["user_profile", "external_id"],
    # ASPECTS_ENABLE_PII is a toggle: its annotation is in aspects_sink.toggles.
    "ASPECTS_ENABLE_PII": False,
    **{
        SINK_SETTING_TEMPLATE.format(name.upper()): True
        for name in BUILTIN_SINK_NAMES
        if name not in PERSONAL_SINK_NAMES
    },
    # .. setting_name: ASPECTS_SINK_EXTRA_SINKS
    # .. setting_default: []
    # .. setting_description: Dotted paths of a site's own Sink classes (they may also come from the
    #   ``aspects_sink.sinks`` entry-point group).
    "ASPECTS_SINK_EXTRA_SINKS": [],
    # .. setting_name: ASPECTS_SINK_CELERY_QUEUE
    # .. setting_default: None
    # .. setting_description: The Celery queue of the plugin's tasks (drains, sweep, backfill ranges);
    #   None: Celery's default queue.
    "ASPECTS_SINK_CELERY_QUEUE": None,
    # .. setting_name: ASPECTS_SINK_BATCH_SIZE
    # .. setting_default: 5000
    # .. setting_description: Outbox entries a drain claims per batch (one INSERT per table per batch).
    "ASPECTS_SINK_BATCH_SIZE": 5000,
    # .. setting_name: ASPECTS_SINK_FLUSH_INTERVAL_SECONDS
    # .. setting_default: 1.0
    # .. setting_description: The shortest time between the starts of two drains of a sink, and how long the
    #   first change after a quiet period waits for those that follow: a steady stream of changes is flushed
    #   about once per interval per table, in few, large INSERTs, each change waiting about one interval.
    "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS": 1.0,
    # .. setting_name: ASPECTS_SINK_MAX_ATTEMPTS
    # .. setting_default: 8
    # .. setting_description: Tries ClickHouse rejects before an outbox entry is parked as a dead letter.
    "ASPECTS_SINK_MAX_ATTEMPTS": 8,
    # .. setting_name: ASPECTS_SINK_QUEUE_ALARM_ENTRIES
    # .. setting_default: 5000000
    # .. setting_description: A queue's table (the outbox, the xAPI statement queue) holding about this many
    #   entries or more raises an alarm: an ERROR log line at every drain, naming the queue and its size,
    #   until it is below again. Nothing is dropped or refused at the bound: the LMS database keeps growing
    #   (about 1 GB per 3 million statements) while the drain catches up at full speed. Set it below what
    #   your database can hold for the longest ClickHouse outage you plan for (3 million statements a day
    #   at 3 million events a day). 0 turns the alarm off.
    "ASPECTS_SINK_QUEUE_ALARM_ENTRIES": 5_000_000,
    # .. setting_name: ASPECTS_SINK_RETRY_BASE_SECONDS
    # .. setting_default: 2
    # .. setting_description: First retry delay after a failed batch; it doubles with every try.
    "ASPECTS_SINK_RETRY_BASE_SECONDS": 2,
    # .. setting_name: ASPECTS_SINK_RETRY_MAX_SECONDS
    # .. setting_default: 300
    # .. setting_description: The longest retry delay.
    "ASPECTS_SINK_RETRY_MAX_SECONDS": 300,
    # .. setting_name: ASPECTS_SINK_SWEEP_INTERVAL_SECONDS
    # .. setting_default: 60
    # .. setting_description: How often Celery beat sweeps for pending entries whose wake-up was lost.
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 60,
    # .. setting_name: ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS
    # .. setting_default: 10
    # .. setting_description: A course is dumped at most once per interval: the first publish after a quiet
    #   interval goes out at once, every publish during the following interval is covered by one more dump.
    "ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS": 10,
    # ASPECTS_SINK_RETIREMENT_WAIT is a toggle: its annotation is in aspects_sink.toggles.
    "ASPECTS_SINK_RETIREMENT_WAIT": False,
    # .. setting_name: ASPECTS_SINK_RETIREMENT_MUTATION_TIMEOUT_SECONDS
    # .. setting_default: 120
    # .. setting_description: How long a drain waits for a retirement mutation to show done in
    #   ``system.mutations``; a mutation still running then (or failing) is retried later, never
    #   acknowledged as done.
    "ASPECTS_SINK_RETIREMENT_MUTATION_TIMEOUT_SECONDS": 120,
    # .. setting_name: ASPECTS_SINK_CLUSTER
    # .. setting_default: {"name": None, "shards": 1}
    # .. setting_description: A ClickHouse cluster's name turns on ON CLUSTER DDL and Replicated engines;
    #   more than one shard adds Distributed tables over ``<table>_local`` tables (docs/decisions/0003).
    "ASPECTS_SINK_CLUSTER": {"name": None, "shards": 1},
    # ASPECTS_SINK_XAPI_ENABLED is a toggle: its annotation is in aspects_sink.toggles.
    "ASPECTS_SINK_XAPI_ENABLED": True,
    # .. setting_name: ASPECTS_SINK_XAPI_DATABASE
    # .. setting_default: None
    # .. setting_description: The database of Aspects' raw xAPI table. None: ``xapi_database`` of
    #   ``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG`` (Tutor sets it from its ASPECTS_XAPI_DATABASE), else ``xapi``.
    "ASPECTS_SINK_XAPI_DATABASE": None,
    # .. setting_name: ASPECTS_SINK_XAPI_TABLE
    # .. setting_default: "xapi_events_all"
    # .. setting_description: Aspects' raw xAPI table, which its materialized views read.
    "ASPECTS_SINK_XAPI_TABLE": "xapi_events_all",
    # .. setting_name: ASPECTS_SINK_XAPI_BATCH_SIZE
    # .. setting_default: 2000
    # .. setting_description: Statements per INSERT at most.
    "ASPECTS_SINK_XAPI_BATCH_SIZE": 2000,
    # .. setting_name: ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS
    # .. setting_default: 2.0
    # .. setting_description: The longest a statement waits for its INSERT while statements keep coming.
    "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS": 2.0,
    # .. setting_name: ASPECTS_SINK_XAPI_MAX_ATTEMPTS
    # .. setting_default: 8
    # .. setting_description: Tries ClickHouse rejects before a statement is parked as a dead letter.
    "ASPECTS_SINK_XAPI_MAX_ATTEMPTS": 8,
    # .. setting_name: ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS
    # .. setting_default: 10000
    # .. setting_description: Dead statements kept; beyond this the oldest are evicted, each logged.
    "ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS": 10_000,
    # .. setting_name: ASPECTS_SINK_XAPI_EVENTS
    # .. setting_default: None
    # .. setting_description: Names of the events to store as statements; None: every event that ERB's
    #   own allow-list lets in.
    "ASPECTS_SINK_XAPI_EVENTS": None,
    # ASPECTS_SINK_XAPI_IN_REQUEST is a toggle: its annotation is in aspects_sink.toggles.
    "ASPECTS_SINK_XAPI_IN_REQUEST": True,
    # .. setting_name: ASPECTS_SINK_XAPI_LRS_ROUTE_URLS
    # .. setting_default: []
    # .. setting_description: While statements go to ClickHouse through aspects-sink, event-routing-backends'
    #   LRS routes (RouterConfiguration rows) receive them only if their ``route_url`` is listed here. An LRS
    #   that writes into the raw xAPI table aspects-sink fills (Aspects' Ralph) would insert every statement a
    #   second time, firing Aspects' materialized views twice: list only LRSs that store statements elsewhere.
    "ASPECTS_SINK_XAPI_LRS_ROUTE_URLS": [],
    # .. setting_name: ASPECTS_SINK_STATUS_THRESHOLDS
    # .. setting_default: {"oldest_pending_warning_seconds": 300, "oldest_pending_critical_seconds": 1800,
    #   "dead_letters_warning": 1, "dead_letters_critical": 1000, "sweep_warning_seconds": 600,
    #   "mutation_pending_warning_seconds": 3600}
    # .. setting_description: When ``aspects_sink_status`` (and the admin status page, and the metrics'
    #   ``aspects_sink_status_level``) say warning (exit code 1) or critical (2): the age of a queue's oldest
    #   pending entry, its number of dead letters, how long since the periodic sweep last ran (Celery beat), and
    #   how long a retirement mutation may stay pending. Keys left out keep their default.
    "ASPECTS_SINK_STATUS_THRESHOLDS": {
        "oldest_pending_warning_seconds": 300,
        "oldest_pending_critical_seconds": 1800,
        "dead_letters_warning": 1,
        "dead_letters_critical": 1000,
        "sweep_warning_seconds": 600,
        "mutation_pending_warning_seconds": 3600,
    },
    # .. setting_name: ASPECTS_SINK_METRICS_TOKEN
    # .. setting_default: None
    # .. setting_description: A secret that lets Prometheus read ``/aspects_sink/metrics`` with
    #   ``Authorization: Bearer <token>``. Without it only logged-in staff can read the metrics.
    "ASPECTS_SINK_METRICS_TOKEN": None,
}

# Platform settings the plugin reads, with edx-platform's own default; the plugin never sets them.
PLATFORM_DEFAULTS: dict[str, Any] = {
    "RETIRED_USERNAME_PREFIX": "retired__user_",
    # event-routing-backends': whether its route batches events (their times then reach its transformers as text)
    "EVENT_ROUTING_BACKEND_BATCHING_ENABLED": False,
}


def merged(name: str, value: Any) -> Any:
    """``value`` of setting ``name``, a mapping merged over the mapping default so keys left out keep theirs."""
    default = DEFAULTS.get(name)
    if isinstance(default, dict) and isinstance(value, dict):
        return {**copy.deepcopy(default), **value}
    return value


class PluginSettings:
    """
    ``aspects_settings.NAME``: the Django setting ``NAME``, else its default; mappings merged over theirs.

    ``source`` is ``django.conf.settings``, or a settings module being built (the xAPI routing rewires one).
    Nothing is cached, so a setting overridden at run time (Django's ``override_settings``, pytest-django's
    ``settings`` fixture) is seen at once.
    """

    def __init__(self, source: Any = django_settings):
        self._source = source

    def __getattr__(self, name: str) -> Any:
        if name in DEFAULTS:
            default = DEFAULTS[name]
        elif name in PLATFORM_DEFAULTS:
            default = PLATFORM_DEFAULTS[name]
        else:
            raise AttributeError(f"{name} is not a setting aspects-sink reads")
        if not hasattr(self._source, name):
            return copy.deepcopy(default)
        return merged(name, getattr(self._source, name))


aspects_settings = PluginSettings()
