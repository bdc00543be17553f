"""
Default settings for aspects-sink, applied to the LMS and CMS by the plugin machinery.

Names shared with platform-plugin-aspects (``EVENT_SINK_CLICKHOUSE_*``, ``ASPECTS_ENABLE_PII``)
keep their meaning, so a site switching plugins keeps its Tutor configuration.
Names of our own start with ``ASPECTS_SINK_``.
"""

# Every object this plugin can send, and the platform model it reads. Sites on a fork can point
# these at other modules; nothing in the plugin imports edx-platform models directly.
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
}


def plugin_settings(settings):
    """Set the defaults; ``settings.production`` then overrides them from ``ENV_TOKENS``."""
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
        # http(s)://host:port/ of a ClickHouse server, or chdb://<path> for an embedded engine.
        "url": "http://clickhouse:8123",
        "username": "ch_lms",
        "password": "",
        "database": "event_sink",
        "timeout_secs": 5,
        # TLS: verify the server certificate (True, False, or a CA bundle path) and an optional client cert.
        "verify": True,
        "ca_cert": None,
        "client_cert": None,
        "client_cert_key": None,
    }
    settings.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG = dict(DEFAULT_MODEL_CONFIG)
    # Sinks whose rows are deleted when their user is retired. Sinks with personal columns that are
    # not listed here (course_enrollment.username) have those columns blanked instead.
    settings.EVENT_SINK_CLICKHOUSE_PII_MODELS = ["user_profile", "external_id"]
    # Personal data (names, emails, usernames) is sent only when this is on.
    settings.ASPECTS_ENABLE_PII = False

    # Per-sink switches compatible with platform-plugin-aspects. A sink runs when its setting is
    # True or its waffle flag ``aspects_sink.<name>.enabled`` is active.
    settings.EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED = True
    settings.EVENT_SINK_CLICKHOUSE_USER_PROFILE_ENABLED = True
    settings.EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED = True
    settings.EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = True
    settings.EVENT_SINK_CLICKHOUSE_USER_RETIREMENT_ENABLED = True

    # Extra sinks: dotted paths to Sink classes (they may also come from the
    # ``aspects_sink.sinks`` entry-point group).
    settings.ASPECTS_SINK_EXTRA_SINKS = []

    # Delivery.
    settings.ASPECTS_SINK_CELERY_QUEUE = None  # None: Celery's default queue
    settings.ASPECTS_SINK_BATCH_SIZE = 5000  # outbox rows drained per batch
    # A steady stream of changes is flushed about once per interval per table: few, large INSERTs.
    settings.ASPECTS_SINK_FLUSH_INTERVAL_SECONDS = 1.0
    settings.ASPECTS_SINK_MAX_ATTEMPTS = 8  # failed tries before a row is parked as a dead letter
    settings.ASPECTS_SINK_RETRY_BASE_SECONDS = 2  # first retry delay; doubles each try
    settings.ASPECTS_SINK_RETRY_MAX_SECONDS = 300
    settings.ASPECTS_SINK_SWEEP_INTERVAL_SECONDS = 60  # Celery beat sweep of rows whose trigger was lost
    # A course is dumped at most once per interval: the first publish goes out within the flush
    # interval, every publish during the following interval is covered by one more dump.
    settings.ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS = 10
    settings.ASPECTS_SINK_RETIREMENT_WAIT = False  # wait for the ClickHouse mutation to finish

    # ClickHouse cluster: a cluster name turns on ON CLUSTER DDL and Replicated engines; more than
    # one shard adds Distributed tables over ``<table>_local`` tables.
    settings.ASPECTS_SINK_CLUSTER = {"name": None, "shards": 1}

    xapi_settings(settings)
    schedule_sweep(settings)


def xapi_settings(settings):
    """
    xAPI statements from event-routing-backends straight into ClickHouse (docs/decisions/0005).

    ERB's own settings keep their meaning: its allow-list, ``XAPI_EVENTS_ENABLED`` (circuit breaker),
    ``XAPI_EVENT_LOGGING_ENABLED`` and its batching, which now concerns LRSs only. ERB's tracking backend
    is rewired in ``AppConfig.ready()``, once every plugin's settings have run (aspects_sink.xapi.routing).
    """
    settings.ASPECTS_SINK_XAPI_ENABLED = True  # ERB's xapi backend records statements for ClickHouse
    settings.ASPECTS_SINK_XAPI_DATABASE = "xapi"  # Aspects' raw table: <database>.<table>
    settings.ASPECTS_SINK_XAPI_TABLE = "xapi_events_all"
    settings.ASPECTS_SINK_XAPI_BATCH_SIZE = 2000  # statements per INSERT at most
    settings.ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS = 2.0  # longest wait of a statement before its INSERT
    settings.ASPECTS_SINK_XAPI_MAX_ATTEMPTS = 8  # tries before a statement ClickHouse rejects is parked
    settings.ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS = 10_000  # beyond this, the oldest are evicted (logged)
    settings.ASPECTS_SINK_XAPI_EVENTS = None  # event names to store; None: every event ERB's allow-list lets in
    # Transform where the event is emitted (one INSERT into the LMS database) instead of in one Celery
    # task per event: statements commit with the request, and a broker outage loses none.
    settings.ASPECTS_SINK_XAPI_IN_REQUEST = True
    settings.XAPI_EVENTS_ENABLED = True


def schedule_sweep(settings):
    """
    Add the periodic outbox sweep to Celery beat, so nothing waits forever if a trigger was lost.

    Celery's Django namespace reads ``CELERY_BEAT_SCHEDULE``; older platform settings call it
    ``CELERYBEAT_SCHEDULE``. The entry goes into whichever the platform defines (both if both).
    """
    entry = {
        "task": "aspects_sink.tasks.sweep_outbox",
        "schedule": settings.ASPECTS_SINK_SWEEP_INTERVAL_SECONDS,
    }
    names = [name for name in ("CELERY_BEAT_SCHEDULE", "CELERYBEAT_SCHEDULE") if hasattr(settings, name)]
    for name in names or ["CELERY_BEAT_SCHEDULE"]:
        schedule = dict(getattr(settings, name, None) or {})
        schedule["aspects_sink.sweep_outbox"] = entry
        setattr(settings, name, schedule)
