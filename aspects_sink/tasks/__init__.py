"""
The plugin's Celery tasks, the top of the package: nothing in ``aspects_sink`` imports this package.

Tasks are sent by name (:func:`aspects_sink.scheduling.send_task`), so the code below them needs no
import of Celery task objects. Task names are kept stable across releases: tasks queued by an older
release, and Celery beat schedules, keep working.

* :mod:`.drain`: drain a sink's queue (outbox entries, xAPI statements), and the periodic sweep;
* :mod:`.backfill`: dump one range of a ``dump_data_to_clickhouse --workers`` run.
"""

from aspects_sink.tasks.backfill import dump_backfill_range
from aspects_sink.tasks.drain import drain_outbox, sweep_outbox

__all__ = ["drain_outbox", "dump_backfill_range", "sweep_outbox"]
