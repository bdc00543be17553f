"""
The Django app behind aspects-sink, and how Open edX loads it.

edx-platform finds this class through the ``lms.djangoapp`` / ``cms.djangoapp`` entry points,
adds it to INSTALLED_APPS, applies the settings modules named in ``plugin_app`` and connects the
receivers listed there. Receivers whose sender is a configurable model (``post_save`` of
UserProfile, ExternalId, User) are connected in :meth:`ready`, because the model is only known
once ``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG`` has been read.
"""

from django.apps import AppConfig
from django.conf import settings

from aspects_sink.settings.common import schedule_sweep

# edx-platform's plugin constants (openedx.core.djangoapps.plugins.constants) are plain strings;
# spelling them out keeps this module importable without edx-platform.
_LMS = "lms.djangoapp"
_CMS = "cms.djangoapp"


def _receiver(func_name: str, signal_path: str) -> dict:
    return {"receiver_func_name": func_name, "signal_path": signal_path}


def _settings_for_project() -> dict:
    return {
        "common": {"relative_path": "settings.common"},
        "test": {"relative_path": "settings.common"},
        "devstack": {"relative_path": "settings.common"},
        "production": {"relative_path": "settings.production"},
    }


# Enrollments change in both services: Studio enrolls a new course's creator and the instructors its course
# team page adds (edx-platform's ``initialize_permissions``, ``_course_team_user``).
_ENROLLMENT_RECEIVERS = [
    _receiver("on_enrollment_event", f"openedx_events.learning.signals.{signal}")
    for signal in ("COURSE_ENROLLMENT_CREATED", "COURSE_ENROLLMENT_CHANGED", "COURSE_UNENROLLMENT_COMPLETED")
]


class AspectsSinkConfig(AppConfig):
    """Open edX plugin app that sends platform data and xAPI statements to ClickHouse."""

    name = "aspects_sink"
    verbose_name = "Aspects sink"
    default_auto_field = "django.db.models.BigAutoField"

    plugin_app = {
        # /aspects_sink/metrics: Prometheus metrics for staff or a scraper with ASPECTS_SINK_METRICS_TOKEN.
        "url_config": {_LMS: {"namespace": "aspects_sink", "regex": r"^aspects_sink/", "relative_path": "urls"}},
        "settings_config": {_LMS: _settings_for_project(), _CMS: _settings_for_project()},
        "signals_config": {
            _LMS: {
                "relative_path": "receivers",
                "receivers": [
                    *_ENROLLMENT_RECEIVERS,
                    _receiver(
                        "on_user_retired", "openedx.core.djangoapps.user_api.accounts.signals.USER_RETIRE_LMS_MISC"
                    ),
                ],
            },
            _CMS: {
                "relative_path": "receivers",
                "receivers": [
                    _receiver("on_course_published", "xmodule.modulestore.django.COURSE_PUBLISHED"),
                    *_ENROLLMENT_RECEIVERS,
                ],
            },
        },
    }

    def ready(self):
        from aspects_sink import receivers  # noqa: PLC0415 - models are importable only once apps are ready
        from aspects_sink.xapi import routing  # noqa: PLC0415

        receivers.connect_model_receivers()
        routing.wire_tracker()
        # On the final settings: Tutor appends its plugins' settings after every plugin's production settings ran.
        schedule_sweep(settings)
