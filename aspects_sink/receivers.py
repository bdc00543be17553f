"""
Signal receivers: thin adapters from platform signals to the outbox.

Each one records which objects changed, inside the platform's transaction, and returns. Reading
the objects happens later, in a worker, after commit (docs/decisions/0001-transactional-outbox.rst).
The platform signals are connected by ``plugin_app`` per service; ``post_save`` receivers are
connected in ``ready()`` because their senders come from ``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG``.
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_save

from aspects_sink import outbox, platform
from aspects_sink.sinks.registry import get_sink

log = logging.getLogger(__name__)

# A saved User re-sends every sink whose rows carry the username or email.
USER_DEPENDENT_SINKS = ("user_profile", "external_id", "course_enrollment")
USER_FIELDS_SENT = {"username", "email"}


def record_change(sink_name: str, *object_ids) -> None:
    """Queue objects of one sink for sending, if the sink is on. The public entry point for site sinks."""
    if get_sink(sink_name).is_enabled():
        outbox.enqueue(sink_name, object_ids)


def on_course_published(sender, course_key, **kwargs):
    """CMS: a course was published; its overview and blocks are dumped after the storm settles."""
    record_change("course_overviews", str(course_key))


def on_enrollment_event(sender, enrollment=None, **kwargs):
    """LMS: COURSE_ENROLLMENT_CREATED / _CHANGED / COURSE_UNENROLLMENT_COMPLETED (mode-only changes too)."""
    if enrollment is not None:
        record_change("course_enrollment", enrollment.user.id)


def on_user_retired(sender, user=None, **kwargs):
    """LMS: USER_RETIRE_LMS_MISC; the user's personal data leaves every ClickHouse table."""
    if user is not None:
        record_change("user_retirement", user.id)


def on_profile_saved(sender, instance, **kwargs):
    """A profile was saved: re-send it."""
    record_change("user_profile", instance.user_id)


def on_external_id_saved(sender, instance, **kwargs):
    """An external id was saved (``bulk_create`` sends no signal: the backfill covers those)."""
    record_change("external_id", instance.user_id)


def on_user_saved(sender, instance, update_fields=None, **kwargs):
    """A username or email change reaches every table that shows them; a login (last_login only) does not."""
    if update_fields is not None and not USER_FIELDS_SENT.intersection(update_fields):
        return
    for sink_name in USER_DEPENDENT_SINKS:
        record_change(sink_name, instance.id)


MODEL_RECEIVERS = (
    ("user_profile", on_profile_saved),
    ("external_id", on_external_id_saved),
    ("auth_user", on_user_saved),
)


def connect_model_receivers() -> None:
    """Connect ``post_save`` of the configured models; a model missing on this platform is skipped."""
    for model_name, receiver in MODEL_RECEIVERS:
        try:
            model = platform.get_model(model_name)
        except platform.PlatformModelMissing as error:
            log.info("aspects_sink: not listening to %s saves: %s", model_name, error)
            continue
        post_save.connect(receiver, sender=model, dispatch_uid=f"aspects_sink.{receiver.__name__}")
