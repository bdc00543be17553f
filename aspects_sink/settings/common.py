"""
Default settings for aspects-sink, applied to the LMS and CMS by the plugin machinery (``plugin_app``).

The defaults themselves are in :data:`aspects_sink.conf.DEFAULTS`; this module copies them into the
platform's settings so that they show in ``./manage.py lms diffsettings`` and can be overridden like any
other setting, and schedules the periodic sweep.
"""

import copy

from aspects_sink.conf import DEFAULTS
from aspects_sink.task_names import SWEEP_TASK


def plugin_settings(settings):
    """Set every default; ``settings.production`` then merges the operator's ``ENV_TOKENS`` over them."""
    for name, default in DEFAULTS.items():
        setattr(settings, name, copy.deepcopy(default))
    # event-routing-backends' circuit breaker for xAPI, on as Aspects ships it (docs/decisions/0005).
    # ERB's tracking backend is rewired in AppConfig.ready(), once every plugin's settings have run.
    settings.XAPI_EVENTS_ENABLED = True
    schedule_sweep(settings)


def schedule_sweep(settings):
    """
    Add the periodic outbox sweep to Celery beat, so nothing waits forever if a trigger was lost.

    Celery's Django namespace reads ``CELERY_BEAT_SCHEDULE``; older platform settings call it
    ``CELERYBEAT_SCHEDULE``. The entry goes into whichever the platform defines (both if both).
    """
    entry = {
        "task": SWEEP_TASK,
        "schedule": settings.ASPECTS_SINK_SWEEP_INTERVAL_SECONDS,
    }
    if settings.ASPECTS_SINK_CELERY_QUEUE:  # beat sends it there, as the plugin sends its other tasks
        entry["options"] = {"queue": settings.ASPECTS_SINK_CELERY_QUEUE}
    names = [name for name in ("CELERY_BEAT_SCHEDULE", "CELERYBEAT_SCHEDULE") if hasattr(settings, name)]
    for name in names or ["CELERY_BEAT_SCHEDULE"]:
        schedule = dict(getattr(settings, name, None) or {})
        schedule["aspects_sink.sweep_outbox"] = entry
        setattr(settings, name, schedule)
