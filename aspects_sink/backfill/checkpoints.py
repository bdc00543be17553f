"""
Checkpoints: how far a backfill got, in the LMS database, so an interrupted run can continue.

A run of one sink covers one range of its keys, or several when ``--workers`` splits it. Each range's
row moves forward only after ClickHouse has acknowledged a batch, with a conditional UPDATE that also
checks the range still belongs to this run (its ``token``): a worker whose range was given up on, or a
stale Celery task, finds it changed and stops instead of writing beside a newer run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aspects_sink.backfill.source import BackfillError, BackfillSource
from aspects_sink.models import DumpCheckpoint

UNFINISHED = (DumpCheckpoint.PENDING, DumpCheckpoint.RUNNING, DumpCheckpoint.STOPPED)


@dataclass(frozen=True)
class RunParameters:
    """
    What every range of a run keeps (``DumpCheckpoint.parameters``, as JSON): the selection, which a
    resumed run must keep (``SELECTION``), where the rows go, and the batch settings Celery workers read.
    """

    force: bool = False
    limit: int | None = None
    ids_to_skip: tuple[str, ...] = ()
    start_pk: str = ""
    target: str = ""
    batch_size: int = 10_000
    sleep_time: float = 0.0

    SELECTION = ("force", "limit", "ids_to_skip", "start_pk")

    def selection(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SELECTION}

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ids_to_skip": list(self.ids_to_skip)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunParameters:
        """The parameters a checkpoint row holds; names it lacks (an older release's row) keep their defaults."""
        known = {field.name for field in fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        return cls(**{**values, "ids_to_skip": tuple(values.get("ids_to_skip") or ())})


class RangeCancelled(BackfillError):
    """The range was stopped or handed to another run while this one worked on it."""


class RangeCheckpoint:
    """
    One range of one sink's keys and the progress made in it.

    ``persist=False`` keeps it in memory only: a run of explicit ``--ids`` cannot be resumed and must not
    overwrite the checkpoints of an interrupted full run.
    """

    def __init__(self, row: DumpCheckpoint, source: BackfillSource, *, persist: bool = True):
        self.row = row
        self.source = source
        self.persist = persist

    def __repr__(self) -> str:
        return f"<RangeCheckpoint {self.row}>"

    def _key(self, text: str) -> Any:
        return self.source.parse_key(text) if text else None

    @property
    def after(self) -> Any:
        """The key to continue after: the last acknowledged one, else the start of the range."""
        return self._key(self.row.last_acknowledged or self.row.range_start)

    @property
    def up_to(self) -> Any:
        return self._key(self.row.range_end)

    @property
    def done(self) -> int:
        """Objects dealt with in this range so far (sent, skipped or failed)."""
        return self.row.rows + self.row.skipped + self.row.failed

    def start(self) -> None:
        """
        Take the range for this process: any earlier holder is fenced off, and what it acknowledged since this
        process read the range is where this one goes on (only the holder's fields are written).
        """
        self.row.token = uuid.uuid4()
        self.row.state = DumpCheckpoint.RUNNING
        self.row.last_error = ""
        if self.persist:
            taken = DumpCheckpoint.objects.filter(pk=self.row.pk).update(
                token=self.row.token, state=self.row.state, last_error="", updated_at=timezone.now()
            )
            if not taken:  # a run started since without --resume dropped the sink's checkpoints
                raise RangeCancelled(f"{self.row.sink}: the range was replaced by another run")
            self.row.refresh_from_db(fields=["last_acknowledged", "rows", "skipped", "failed"])

    def acknowledge(self, last: Any, *, rows: int, skipped: int, failed: int, error: str = "") -> None:
        """Record a batch ClickHouse acknowledged; raise RangeCancelled if the range is no longer ours."""
        self.row.last_acknowledged = str(last)
        self.row.rows += rows
        self.row.skipped += skipped
        self.row.failed += failed
        self.row.last_error = self.row.last_error or error
        if not self.persist:
            return
        updated = self._ours().update(
            last_acknowledged=self.row.last_acknowledged,
            rows=F("rows") + rows,
            skipped=F("skipped") + skipped,
            failed=F("failed") + failed,
            last_error=self.row.last_error,
            updated_at=timezone.now(),
        )
        if not updated:
            raise RangeCancelled(f"{self.row.sink}: the range was stopped or taken over by another run")

    def finish(self) -> None:
        self._end(DumpCheckpoint.DONE, "")

    def stop(self, reason: str) -> None:
        """Leave the range for ``--resume``, saying why it stopped."""
        self._end(DumpCheckpoint.STOPPED, reason)

    def _end(self, state: str, reason: str) -> None:
        self.row.state = state
        self.row.last_error = reason or self.row.last_error
        if self.persist:
            self._ours().update(state=state, last_error=self.row.last_error, updated_at=timezone.now())

    def _ours(self):
        return DumpCheckpoint.objects.filter(pk=self.row.pk, token=self.row.token, state=DumpCheckpoint.RUNNING)


def begin(sink_name: str, parameters: RunParameters, ranges: Sequence[tuple[str, str]]) -> list[DumpCheckpoint]:
    """Record a new run of one sink, one row per range; the sink's previous checkpoints are dropped."""
    with transaction.atomic():
        DumpCheckpoint.objects.filter(sink=sink_name).delete()
        return DumpCheckpoint.objects.bulk_create(
            DumpCheckpoint(sink=sink_name, range_start=start, range_end=end, parameters=parameters.to_json())
            for start, end in ranges
        )


def latest(sink_name: str) -> list[DumpCheckpoint]:
    """The ranges of the sink's last run, in key order."""
    return list(DumpCheckpoint.objects.filter(sink=sink_name).order_by("id"))


def unfinished(rows: Sequence[DumpCheckpoint]) -> list[DumpCheckpoint]:
    """The ranges a resumed run still has to work on."""
    return [row for row in rows if row.state in UNFINISHED]


def hand_out(row: DumpCheckpoint) -> uuid.UUID | None:
    """
    Mark a range as waiting for a worker, under a new token that the worker's task must present, with the run's
    parameters (``row.parameters``, which the worker reads); None if it is no longer unfinished (a worker of the
    run being resumed finished it since it was read). The progress recorded meanwhile stays as it is.
    """
    token = uuid.uuid4()
    handed = DumpCheckpoint.objects.filter(pk=row.pk, state__in=UNFINISHED).update(
        token=token, state=DumpCheckpoint.PENDING, last_error="", parameters=row.parameters, updated_at=timezone.now()
    )
    if not handed:
        return None
    row.token, row.state, row.last_error = token, DumpCheckpoint.PENDING, ""
    return token


def claim(row_id: int, token: str) -> DumpCheckpoint | None:
    """A worker takes a range handed out to it; None if the range was given up on or handed out again."""
    claimed = DumpCheckpoint.objects.filter(id=row_id, token=token, state=DumpCheckpoint.PENDING).update(
        state=DumpCheckpoint.RUNNING, updated_at=timezone.now()
    )
    return DumpCheckpoint.objects.get(id=row_id) if claimed else None


def give_up(row_ids: Sequence[int], reason: str) -> None:
    """Stop ranges nobody finished: their workers stop at their next batch, and --resume picks them up."""
    DumpCheckpoint.objects.filter(id__in=row_ids, state__in=UNFINISHED).update(
        state=DumpCheckpoint.STOPPED, last_error=reason, updated_at=timezone.now()
    )
