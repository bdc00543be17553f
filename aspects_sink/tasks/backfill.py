"""Dump one range of a backfill that ``dump_data_to_clickhouse --workers`` handed out."""

from __future__ import annotations

from celery import shared_task
from edx_django_utils.monitoring import set_code_owner_attribute

from aspects_sink.backfill import workers
from aspects_sink.task_names import RANGE_TASK


@shared_task(name=RANGE_TASK, ignore_result=True)
@set_code_owner_attribute
def dump_backfill_range(checkpoint_id: int, token: str) -> None:
    """See :func:`aspects_sink.backfill.workers.run_dispatched`."""
    workers.run_dispatched(checkpoint_id, token)
