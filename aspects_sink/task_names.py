"""
The names of the plugin's Celery tasks, in one place below everything that sends them.

Tasks are sent by name, so code below :mod:`aspects_sink.tasks` never imports it; the names are stable
across releases, so tasks queued by an older release and Celery beat schedules keep working.
"""

DRAIN_TASK = "aspects_sink.tasks.drain_outbox"
SWEEP_TASK = "aspects_sink.tasks.sweep_outbox"
RANGE_TASK = "aspects_sink.tasks.dump_backfill_range"
