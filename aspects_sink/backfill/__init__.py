"""
The backfill behind ``dump_data_to_clickhouse``: every object of a sink (or a selection) into ClickHouse,
fast, resumable, and saying where it is.

* :mod:`.source` reads a sink's objects in keyset pages of primary keys and turns a page into rows with
  the sink's own code (the live path's);
* :mod:`.runner` is the batch loop: one INSERT per table per batch, a checkpoint after each;
* :mod:`.checkpoints` keeps how far each range got, in the LMS database;
* :mod:`.workers` fans ranges out to Celery workers and watches them;
* :mod:`.job` runs one sink from start to report.
"""

from aspects_sink.backfill.job import BackfillOptions, SinkBackfill, SinkReport
from aspects_sink.backfill.source import BackfillError, dumpable

__all__ = ["BackfillError", "BackfillOptions", "SinkBackfill", "SinkReport", "dumpable"]
