"""
Celery tasks: drain a sink's outbox, and sweep for work whose trigger was lost.

A change wakes at most one drain per sink per flush interval (a cache key debounces the wake-ups),
so thousands of changes a second become about one task and one INSERT per table per interval.
If the broker is down the wake-up fails quietly for the request: the entries are safe in the
outbox, and the periodic sweep (Celery beat, or ``aspects_sink_sweep`` from cron) sends them later.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from edx_django_utils.monitoring import set_code_owner_attribute

from aspects_sink import delivery, outbox

log = logging.getLogger(__name__)

DRAIN_TASK = "aspects_sink.tasks.drain_outbox"


def _debounce_key(sink_name: str) -> str:
    return f"aspects_sink:drain-scheduled:{sink_name}"


def _wake_delay(sink_name: str) -> float:
    if sink_name == "course_overviews":
        # Publishing storms: every publish in this window is dumped by one drain.
        return float(settings.ASPECTS_SINK_COURSE_PUBLISH_DELAY_SECONDS)
    return float(settings.ASPECTS_SINK_FLUSH_INTERVAL_SECONDS)


def schedule_drain(sink_name: str, countdown: float | None = None, force: bool = False) -> bool:
    """
    Ask a worker to drain ``sink_name`` soon; return False if the broker could not be reached.

    Without ``force`` a drain already scheduled makes this a no-op.
    """
    delay = _wake_delay(sink_name) if countdown is None else countdown
    key = _debounce_key(sink_name)
    if not force and not cache.add(key, 1, timeout=max(delay * 2, 1)):
        return True
    try:
        drain_outbox.apply_async(
            args=(sink_name,), countdown=delay, queue=settings.ASPECTS_SINK_CELERY_QUEUE, retry=False
        )
    except Exception as error:
        cache.delete(key)
        log.warning("aspects_sink: could not schedule a drain of %s (the sweep will): %s", sink_name, error)
        return False
    return True


@shared_task(name=DRAIN_TASK, ignore_result=True)
@set_code_owner_attribute
def drain_outbox(sink_name: str) -> dict:
    """Send one sink's pending outbox entries to ClickHouse; reschedule itself while work remains."""
    cache.delete(_debounce_key(sink_name))
    try:
        report = delivery.drain(sink_name)
    except Exception:
        # The LMS database itself failed (locked, restarting...). Nothing was acknowledged; try again soon.
        schedule_drain(sink_name, countdown=outbox.backoff_seconds(1), force=True)
        raise
    if report.next_run_in is not None:
        schedule_drain(sink_name, countdown=report.next_run_in, force=True)
    return {"sink": sink_name, "delivered": report.delivered, "retried": report.retried, "parked": report.parked}


@shared_task(name="aspects_sink.tasks.sweep_outbox", ignore_result=True)
@set_code_owner_attribute
def sweep_outbox() -> list[str]:
    """Wake a drain for every sink with pending entries (run by Celery beat)."""
    return sweep()


def sweep() -> list[str]:
    """Schedule drains of every sink that has pending entries; return their names."""
    woken = []
    for sink_name, info in outbox.pending_by_sink().items():
        if info.get("pending") and schedule_drain(sink_name, countdown=0, force=True):
            woken.append(sink_name)
    return woken


@shared_task(name="aspects_sink.tasks.dump_backfill_range", ignore_result=True)
@set_code_owner_attribute
def dump_backfill_range(checkpoint_id: int, token: str) -> None:
    """Dump one range of a backfill that ``dump_data_to_clickhouse --workers`` handed out (see backfill.workers)."""
    from aspects_sink.backfill import workers  # noqa: PLC0415 - backfill.workers sends this task

    workers.run_dispatched(checkpoint_id, token)
