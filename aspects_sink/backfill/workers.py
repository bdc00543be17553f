"""
``--workers N``: the keys of a sink cut into N ranges, each dumped by a Celery task, the command watching.

Each task runs the same batch loop as a single-process run, in its own range, with its own checkpoint
row; the command learns what happened only from those rows, so it needs no result backend. A range
nobody picks up or advances within the timeout is given up on: its row is stopped (a task arriving
later finds that and does nothing) and the command fails, leaving ``--resume`` to continue.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence

from aspects_sink.backfill import checkpoints
from aspects_sink.backfill.checkpoints import RangeCancelled, RangeCheckpoint
from aspects_sink.backfill.runner import dump_range
from aspects_sink.backfill.source import BackfillError, BackfillSource
from aspects_sink.conf import aspects_settings
from aspects_sink.connection import get_transport
from aspects_sink.models import DumpCheckpoint
from aspects_sink.progress import ProgressReporter
from aspects_sink.scheduling import send_task
from aspects_sink.sinks.registry import get_sink
from aspects_sink.task_names import RANGE_TASK
from aspects_sink.transport import TransportError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class WorkersUnresponsive(BackfillError):
    """No worker took or advanced the backfill's ranges in time."""


def split(source: BackfillSource, start: str, count: int) -> list[tuple[str, str]]:
    """
    Cut the selected keys after ``start`` into at most ``count`` ranges of about equal size, as
    (exclusive start, inclusive end) pairs of key text; the last range is open so it takes new objects.

    Costs one COUNT and ``count - 1`` single-row lookups, whatever the size of the table.
    """
    after = source.parse_key(start) if start else None
    keys = source.between(after).values_list("pk", flat=True)
    total = keys.count()
    cuts = sorted({total * part // count for part in range(1, count)} - {0})
    ends = [str(keys[cut - 1]) for cut in cuts]
    bounds = [start, *ends, ""]
    return list(itertools.pairwise(bounds))


def dispatch(rows: Sequence[DumpCheckpoint]) -> None:
    """Send one task per range; raise BackfillError if the broker cannot take them."""
    for row in rows:
        token = checkpoints.hand_out(row)
        if token is None:  # finished meanwhile by the run being resumed
            continue
        try:
            send_task(RANGE_TASK, (row.id, str(token)))
        except Exception as error:
            checkpoints.give_up([row.id for row in rows], f"broker unreachable: {error}")
            raise BackfillError(f"cannot send backfill tasks to the Celery broker: {error}") from error


def wait(rows: Sequence[DumpCheckpoint], progress: ProgressReporter, timeout: float) -> list[DumpCheckpoint]:
    """
    Follow the ranges' checkpoints until every one is done or stopped, reporting progress; return them.

    Raise WorkersUnresponsive when nothing moved for ``timeout`` seconds.
    """
    ids = [row.id for row in rows]
    reported = sum(row.rows + row.skipped + row.failed for row in rows)
    last_seen, last_change = None, time.monotonic()
    while True:
        current = list(DumpCheckpoint.objects.filter(id__in=ids).order_by("id"))
        if len(current) < len(ids):  # a run started without --resume drops the sink's checkpoints and makes its own
            raise BackfillError(f"another run of {rows[0].sink} (started without --resume) took over its checkpoints")
        done = sum(row.rows + row.skipped + row.failed for row in current)
        progress.advance(done - reported)
        reported = done
        if all(row.state in (DumpCheckpoint.DONE, DumpCheckpoint.STOPPED) for row in current):
            return current
        seen = [(row.state, row.updated_at) for row in current]
        if seen != last_seen:
            last_seen, last_change = seen, time.monotonic()
        elif time.monotonic() - last_change > timeout:
            reason = _unresponsive(current, timeout)
            checkpoints.give_up(ids, reason)
            raise WorkersUnresponsive(reason)
        time.sleep(POLL_SECONDS)


def _unresponsive(rows: Sequence[DumpCheckpoint], timeout: float) -> str:
    if all(row.state == DumpCheckpoint.PENDING for row in rows):
        queue = aspects_settings.ASPECTS_SINK_CELERY_QUEUE or "the default queue"
        return (
            f"no Celery worker picked up the backfill tasks within {timeout:g}s: start a worker on {queue}, "
            "or run without --workers; then use --resume"
        )
    return f"the backfill workers made no progress for {timeout:g}s; use --resume once they are healthy"


def run_dispatched(row_id: int, token: str) -> None:
    """What a worker does with one range: claim it, dump it, stop it with the reason if anything fails."""
    row = checkpoints.claim(row_id, token)
    if row is None:
        log.info("aspects_sink backfill: range %s was given up on or handed out again; nothing to do", row_id)
        return
    try:
        parameters = checkpoints.RunParameters.from_json(row.parameters)
        sink = get_sink(row.sink)
        source = BackfillSource(sink, ids_to_skip=parameters.ids_to_skip, only_changed=not parameters.force)
    except Exception as error:  # the command waits on this range: tell it why, not let it time out
        checkpoints.give_up([row.id], f"the worker could not set the range up: {type(error).__name__}: {error}")
        raise
    checkpoint = RangeCheckpoint(row, source)
    try:
        transport = get_transport()
        source.prepare(transport)
        dump_range(
            source,
            checkpoint,
            transport,
            batch_size=parameters.batch_size,
            sleep_time=parameters.sleep_time,
        )
    except RangeCancelled:
        log.info("aspects_sink backfill: range %s was stopped by the command; leaving it", row_id)
    except (TransportError, BackfillError) as error:
        checkpoint.stop(str(error))
    except Exception as error:
        checkpoint.stop(f"{type(error).__name__}: {error}")
        raise
