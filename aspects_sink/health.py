"""
Each sink's health, recorded by the drains in the LMS database so that any process can read it: the
status command, the metrics endpoint, the admin (:class:`~aspects_sink.models.SinkHealth`).

Recording is one UPDATE (or INSERT the first time) per drain batch, never per row; a failure to record
is logged and never fails the drain.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from aspects_sink.models import SinkHealth

log = logging.getLogger(__name__)


def record_delivery(sink_name: str, rows: int, inserts: int) -> None:
    """ClickHouse acknowledged ``rows`` rows in ``inserts`` statements: the sink flows (a pause ends)."""
    _record(
        sink_name,
        last_success_at=timezone.now(),
        rows_delivered=F("rows_delivered") + rows,
        inserts=F("inserts") + inserts,
        paused_since=None,
    )


def record_switched_off(sink_name: str) -> None:
    """The sink was switched off, its waiting entries dropped: a pause for a configuration error ends with it."""
    _update_if(sink_name, {"paused_since__isnull": False}, paused_since=None)


def record_failure(sink_name: str, error_class: str, message: str, *, pause: bool = False) -> None:
    """A batch failed with an error of ``error_class``; a configuration error pauses the sink until it is fixed."""
    now = timezone.now()
    _record(sink_name, last_error_at=now, last_error_class=error_class, last_error=message[:4000])
    if pause:
        # The first time it paused stays: the status reports how long the sink has been stuck.
        _update_if(sink_name, {"paused_since": None}, paused_since=now)


# How the last error of a sink says that changes could not be recorded (the status reads it back).
OUTBOX_WRITE_FAILED = "outbox write failed: "


def record_outbox_failure(sink_name: str, changes: int, message: str) -> None:
    """``changes`` of the sink could not be recorded in its queue (the platform's transaction went on without)."""
    now = timezone.now()
    _record(
        sink_name,
        failed_outbox_writes=F("failed_outbox_writes") + changes,
        outbox_failed_at=now,
        outbox_failure=message[:4000],
        last_error_at=now,
        last_error_class=SinkHealth.CONFIGURATION,
        last_error=f"{OUTBOX_WRITE_FAILED}{message}"[:4000],
    )


def _update_if(sink_name: str, condition: dict, **changes) -> None:
    """Change the sink's health row if it meets ``condition``; a failure is logged, never raised into a drain."""
    try:
        SinkHealth.objects.filter(sink=sink_name, **condition).update(**changes)
    except DatabaseError as error:
        log.error("aspects_sink: could not record the health of %s: %s", sink_name, error)


def _record(sink_name: str, **changes) -> None:
    try:
        with transaction.atomic():
            if not SinkHealth.objects.filter(sink=sink_name).update(**changes):
                SinkHealth.objects.get_or_create(sink=sink_name)
                SinkHealth.objects.filter(sink=sink_name).update(**changes)
    except DatabaseError as error:
        log.error("aspects_sink: could not record the health of %s: %s", sink_name, error)


def pause_of(sink_name: str) -> SinkHealth | None:
    """The sink's health if a configuration error has paused it, else None (also when it cannot be read)."""
    try:
        return SinkHealth.objects.filter(sink=sink_name, paused_since__isnull=False).first()
    except DatabaseError as error:
        log.error("aspects_sink: could not read the health of %s: %s", sink_name, error)
        return None


def snapshot() -> dict[str, SinkHealth]:
    """Every recorded sink's health, by sink name."""
    return {row.sink: row for row in SinkHealth.objects.all()}
