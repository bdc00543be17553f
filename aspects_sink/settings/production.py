"""Production settings: every aspects-sink setting may be overridden from ``ENV_TOKENS`` (Tutor's config)."""

from aspects_sink.settings.common import schedule_sweep

OVERRIDABLE = (
    "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG",
    "EVENT_SINK_CLICKHOUSE_MODEL_CONFIG",
    "EVENT_SINK_CLICKHOUSE_PII_MODELS",
    "ASPECTS_ENABLE_PII",
    "EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED",
    "EVENT_SINK_CLICKHOUSE_USER_PROFILE_ENABLED",
    "EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED",
    "EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED",
    "EVENT_SINK_CLICKHOUSE_USER_RETIREMENT_ENABLED",
    "ASPECTS_SINK_EXTRA_SINKS",
    "ASPECTS_SINK_CELERY_QUEUE",
    "ASPECTS_SINK_BATCH_SIZE",
    "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS",
    "ASPECTS_SINK_MAX_ATTEMPTS",
    "ASPECTS_SINK_RETRY_BASE_SECONDS",
    "ASPECTS_SINK_RETRY_MAX_SECONDS",
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS",
    "ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS",
    "ASPECTS_SINK_RETIREMENT_WAIT",
    "ASPECTS_SINK_CLUSTER",
    "ASPECTS_SINK_XAPI_ENABLED",
    "ASPECTS_SINK_XAPI_DATABASE",
    "ASPECTS_SINK_XAPI_TABLE",
    "ASPECTS_SINK_XAPI_BATCH_SIZE",
    "ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS",
    "ASPECTS_SINK_XAPI_MAX_ATTEMPTS",
    "ASPECTS_SINK_XAPI_MAX_DEAD_STATEMENTS",
    "ASPECTS_SINK_XAPI_EVENTS",
    "ASPECTS_SINK_XAPI_IN_REQUEST",
)


def plugin_settings(settings):
    """Override the defaults with whatever the operator set in ENV_TOKENS."""
    env_tokens = getattr(settings, "ENV_TOKENS", {}) or {}
    for name in OVERRIDABLE:
        if name not in env_tokens:
            continue
        value = env_tokens[name]
        current = getattr(settings, name, None)
        # A partial dict in ENV_TOKENS (say, only the ClickHouse password) keeps the other defaults.
        if isinstance(value, dict) and isinstance(current, dict):
            value = {**current, **value}
        setattr(settings, name, value)
    # The sweep's interval may have changed.
    schedule_sweep(settings)
