"""
Signal receivers: thin adapters from platform signals to the outbox.

Each one records which objects changed, inside the platform's transaction, and returns. Reading
the objects happens later, in a worker, after commit (docs/decisions/0001-transactional-outbox.rst).
The platform signals are connected by ``plugin_app`` per service. ``post_save`` and ``post_delete``
receivers are connected in ``ready()`` from the sinks' declarations (``saved_models``, ``deleted_models``,
User fields shown in rows, personal rows), because their senders come from
``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG``.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.apps import apps
from django.db.models.signals import post_delete, post_save

from aspects_sink import edx_platform, outbox, retirement
from aspects_sink.sinks.registry import all_sinks, get_sink

log = logging.getLogger(__name__)

USER_MODEL = "auth_user"
USER_FIELDS_SENT = frozenset({"username", "email"})


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
    """
    LMS: USER_RETIRE_LMS_MISC, while the account still has its real username. The user is recorded as
    retired in the retirement's own transaction, and their personal data leaves every ClickHouse table.
    """
    if user is not None:
        retirement.record([user.id])


def on_user_deleted(sender, instance, **kwargs):
    """``post_delete`` of a User: a deleted learner is retired; none of their rows stays."""
    retirement.record([instance.pk])


class SavedModelReceiver:
    """
    ``post_save`` (or ``post_delete``) of one model: re-send, in every sink that declared the model, the
    objects the saved or deleted instance changes.
    """

    def __init__(self, model_name: str, sinks: list):
        self.model_name = model_name
        self.sinks = sinks

    def __call__(self, sender, instance, update_fields=None, **kwargs):
        if self.model_name == USER_MODEL and update_fields is not None and not USER_FIELDS_SENT & set(update_fields):
            return  # a login saves last_login only: nothing any table shows has changed
        for sink in self.sinks:
            if self.model_name == USER_MODEL:
                record_change(sink.name, instance.pk)
            else:
                record_change(sink.name, *sink.changed_objects(self.model_name, instance))


def saved_model_sinks() -> dict[str, list]:
    """Model name → the sinks its saves re-send: declared ``saved_models``, and User-showing sinks for User."""
    by_model = defaultdict(list)
    for sink in all_sinks().values():
        for model_name in sink.saved_models:
            by_model[model_name].append(sink)
        if sink.shows_user_fields:
            by_model[USER_MODEL].append(sink)
    return by_model


def deleted_model_sinks() -> dict[str, list]:
    """
    Model name → the sinks its deletes re-send: declared ``deleted_models``, and the model of every personal
    sink looked up by user (a deleted profile re-sends its user, whose rows then go).
    """
    by_model = defaultdict(list)
    for sink in all_sinks().values():
        for model_name in sink.deleted_models:
            by_model[model_name].append(sink)
        if sink.deletes_retired_rows and getattr(sink, "user_source", None) == sink.lookup:
            by_model[sink.model].append(sink)
    return by_model


def connect_model_receivers() -> None:
    """
    Connect ``post_save`` and ``post_delete`` of the configured models, and a deleted User's retirement; a
    model missing on this platform is skipped.
    """
    try:
        post_delete.connect(
            on_user_deleted, sender=edx_platform.get_model(USER_MODEL), weak=False, dispatch_uid="aspects_sink.deleted"
        )
    except edx_platform.PlatformModelMissing as error:
        log.info("aspects_sink: not listening to user deletions: %s", error)
    for signal, by_model in ((post_save, saved_model_sinks()), (post_delete, deleted_model_sinks())):
        kind = "saves" if signal is post_save else "deletes"
        for model_name, sinks in by_model.items():
            try:
                model = edx_platform.get_model(model_name)
            except edx_platform.PlatformModelMissing as error:
                log.info("aspects_sink: not listening to %s %s: %s", model_name, kind, error)
                continue
            receiver = SavedModelReceiver(model_name, sinks)
            for sender in (model, *_proxies_of(model)):
                signal.connect(
                    receiver,
                    sender=sender,
                    weak=False,
                    dispatch_uid=f"aspects_sink.{model_name}.{kind}.{sender._meta.label}",
                )


def _proxies_of(model) -> list:
    """
    The proxy models of ``model``: Django sends their signals with the proxy as sender, and the platform saves
    through them (openedx-learning's system taxonomies, edx-platform's ``ContentObjectTag``). Every model is
    loaded once apps are ready, where this runs.
    """
    return [each for each in apps.get_models() if each._meta.proxy and each._meta.concrete_model is model]
