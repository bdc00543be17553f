"""Drain a sink's queue to ClickHouse, and sweep for queues whose wake-up was lost (Celery beat)."""

from __future__ import annotations

from celery import shared_task
from edx_django_utils.monitoring import set_code_owner_attribute

from aspects_sink import delivery, outbox, scheduling, status
from aspects_sink.task_names import DRAIN_TASK, SWEEP_TASK
from aspects_sink.xapi import backend


@shared_task(name=DRAIN_TASK, ignore_result=True)
@set_code_owner_attribute
def drain_outbox(sink_name: str, token: str | None = None) -> dict:
    """
    Send one sink's pending entries to ClickHouse; reschedule itself while work remains.

    A duplicate wake-up (see :func:`aspects_sink.scheduling.begin_drain`) returns at once.
    """
    if not scheduling.begin_drain(sink_name, token):
        return {"sink": sink_name, "skipped": "drained recently; the scheduled drain will follow"}
    try:
        report = delivery.drain(sink_name)
    except Exception:
        # The LMS database itself failed (locked, restarting...). Nothing was acknowledged; try again soon, with
        # the schedule (a drain without it would be taken for a duplicate of this one, which just started).
        scheduling.schedule_follow_up(sink_name, outbox.backoff_seconds(1))
        raise
    if report.next_run_in is not None:
        scheduling.schedule_follow_up(sink_name, report.next_run_in)
    return {"sink": sink_name, "delivered": report.delivered, "retried": report.retried, "parked": report.parked}


@shared_task(name=SWEEP_TASK, ignore_result=True)
@set_code_owner_attribute
def sweep_outbox() -> list[str]:
    """
    Wake a drain for every sink with pending entries (run by Celery beat), once the events ERB's batching left in
    its queue are recorded (:func:`aspects_sink.xapi.backend.take_over_erb_batch_queue`); record the run for the
    status.
    """
    status.record_sweep()
    backend.take_over_erb_batch_queue()
    return delivery.sweep()
