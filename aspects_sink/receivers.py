"""
Signal receivers: thin adapters from platform signals to the outbox.

Each one records which objects changed, inside the platform's transaction, and returns. Reading
the objects happens later, in a worker, after commit (docs/decisions/0001-transactional-outbox.rst).
The platform signals are connected by ``plugin_app`` per service. ``post_save`` receivers are
connected in ``ready()`` from the sinks' declarations (``saved_models``, and User fields shown in
rows), because their senders come from ``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG``.
"""

from __future__ import annotations

import logging
from collections import defaultdict

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


class DeletedModelReceiver:
    """``post_delete`` of a model whose rows are personal: the sinks drop the rows of the deleted object's user."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def __call__(self, sender, instance, **kwargs):
        for sink in self.sinks:
            record_change(sink.name, getattr(instance, sink.lookup))


class SavedModelReceiver:
    """``post_save`` of one model: re-send the saved instance in every sink that declared the model."""

    def __init__(self, model_name: str, sinks: list):
        self.model_name = model_name
        self.sinks = sinks

    def __call__(self, sender, instance, update_fields=None, **kwargs):
        if self.model_name == USER_MODEL and update_fields is not None and not USER_FIELDS_SENT & set(update_fields):
            return  # a login saves last_login only: nothing any table shows has changed
        for sink in self.sinks:
            lookup = "pk" if self.model_name == USER_MODEL else sink.lookup
            record_change(sink.name, getattr(instance, lookup))


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
    """Model name → the sinks reading it whose rows are personal and looked up by user (their rows must go)."""
    by_model = defaultdict(list)
    for sink in all_sinks().values():
        if sink.deletes_retired_rows and getattr(sink, "user_source", None) == sink.lookup:
            by_model[sink.model].append(sink)
    return by_model


def connect_model_receivers() -> None:
    """
    Connect ``post_save`` and ``post_delete`` of the configured models; a model missing on this platform
    is skipped.
    """
    try:
        post_delete.connect(
            on_user_deleted, sender=edx_platform.get_model(USER_MODEL), weak=False, dispatch_uid="aspects_sink.deleted"
        )
    except edx_platform.PlatformModelMissing as error:
        log.info("aspects_sink: not listening to user deletions: %s", error)
    for model_name, sinks in deleted_model_sinks().items():
        try:
            model = edx_platform.get_model(model_name)
        except edx_platform.PlatformModelMissing as error:
            log.info("aspects_sink: not listening to %s deletions: %s", model_name, error)
            continue
        post_delete.connect(
            DeletedModelReceiver(sinks), sender=model, weak=False, dispatch_uid=f"aspects_sink.deleted.{model_name}"
        )
    for model_name, sinks in saved_model_sinks().items():
        try:
            model = edx_platform.get_model(model_name)
        except edx_platform.PlatformModelMissing as error:
            log.info("aspects_sink: not listening to %s saves: %s", model_name, error)
            continue
        post_save.connect(
            SavedModelReceiver(model_name, sinks), sender=model, weak=False, dispatch_uid=f"aspects_sink.{model_name}"
        )
