"""
Prove that ClickHouse holds what the LMS holds: compare each sink's table, after FINAL, with the LMS by ranges of
the sink's object keys, and find the objects that are missing, extra or stale.

A range is a slice of the sink's rows in key order, about ``range_size`` rows long: by the table's own key when it
starts with the model's primary key (ClickHouse then reads the range through its primary index), else by the
object key (``lookup``, the id the outbox names: a user id, a course key). For each range both sides are read and
each row hashed the same way: the LMS rows serialized by the sink's own code (as the drains and the backfill send
them), the ClickHouse rows selected ``FINAL`` with the same columns, each value written in one canonical text form
and hashed with BLAKE2b in Python.
Equal counts and equal sums of the row hashes mean equal ranges; otherwise the range's rows are compared by the
table's key to name the differing objects. Memory holds one range at a time, whatever the size of the table.

Reads in the LMS are plain SELECTs in autocommit (no locking reads, no long transaction), so the platform never
waits on them. Objects with a pending outbox entry are on their way and only counted as "in flight". ``repair``
queues the missing and stale objects in the outbox (the drains send their current state) and deletes the extra
rows with one mutation per range.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from aspects_sink import outbox
from aspects_sink.models import LeasedEntry, OutboxEntry
from aspects_sink.progress import ProgressReporter, SilentProgress
from aspects_sink.sinks import columns as col
from aspects_sink.sinks import schema
from aspects_sink.sinks.base import ModelSink, Sink, Stamp
from aspects_sink.sinks.registry import all_sinks
from aspects_sink.transport import ClickHouseTransport

log = logging.getLogger(__name__)

DEFAULT_RANGE_SIZE = 10_000
EXAMPLES_KEPT = 20
_CHUNK = 900  # stay under SQLite's bound on parameters per statement
_MASK = (1 << 64) - 1
_SEPARATOR = "\x1f"
_NULL = "\\N"


class ReconcileError(Exception):
    """A sink cannot be compared (no rows of its own, no key column in its table); the message says why."""


def comparable(sink: Sink) -> bool:
    """Sinks whose rows come from one model can be compared; retirement writes mutations, xAPI has no model."""
    return isinstance(sink, ModelSink)


def canonical(value: Any) -> str:
    """One text form per value, the same whether it came from the sink's serializer or from ClickHouse."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def row_hash(values: Sequence[Any]) -> int:
    """The hash of one row's sent columns: BLAKE2b (64 bits) of their canonical forms."""
    text = _SEPARATOR.join(canonical(value) for value in values)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Side:
    """
    One side of a range: ``rows`` maps each row's key (canonical) to its hash and object (canonical);
    ``raw_keys`` the row's key as ClickHouse types it; ``objects`` each object's key as the sink converts it.
    """

    rows: dict[tuple, tuple[int, str]]
    raw_keys: dict[tuple, tuple]
    objects: dict[str, Any]

    @property
    def summary(self) -> tuple[int, int]:
        """(count, sum of the row hashes): equal summaries mean equal ranges."""
        return len(self.rows), sum(hash_ for hash_, _ in self.rows.values()) & _MASK


@dataclass
class Reconciliation:
    """What the comparison of one sink found (counts over every range; a few example objects of each kind)."""

    sink: str
    table: str
    lms_rows: int = 0
    clickhouse_rows: int = 0
    ranges: int = 0
    differing_ranges: int = 0
    missing: int = 0  # objects with rows in the LMS missing from ClickHouse
    stale: int = 0  # objects whose rows differ
    extra: int = 0  # objects with rows in ClickHouse that the LMS does not have
    extra_rows: int = 0
    in_flight: int = 0  # differing objects with a pending outbox entry: the drains are sending them
    queued: int = 0  # objects queued for sending by --repair
    deleted_rows: int = 0  # extra rows deleted by --repair
    examples: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "stale": [], "extra": []})

    @property
    def differences(self) -> int:
        return self.missing + self.stale + self.extra

    def note(self, kind: str, objects: Sequence[str]) -> None:
        setattr(self, kind, getattr(self, kind) + len(objects))
        kept = self.examples[kind]
        kept.extend(objects[: EXAMPLES_KEPT - len(kept)])


class SinkComparison:
    """How one sink's rows are compared: which columns, which key, which column names the object."""

    def __init__(self, sink: ModelSink, transport: ClickHouseTransport):
        self.sink = sink
        self.transport = transport
        self.table = sink.table_spec
        self.target = schema.qualified(self.table.name, transport.config.database)
        existing = transport.table_columns(transport.qualified(self.table.name))
        # Only the columns the table has: inserts leave the others out too.
        self.columns = [column for column in sink.columns if column.name in existing]
        names = [column.name for column in self.columns]
        missing_keys = [name for name in self.table.key if name not in names]
        if missing_keys:
            raise ReconcileError(f"{sink.name}: table {self.target} lacks key columns {', '.join(missing_keys)}")
        self.key_positions = [names.index(name) for name in self.table.key]
        self.key_types = [self.columns[i].clickhouse_type for i in self.key_positions]
        self.object_column = self._object_column()
        self.object_position = names.index(self.object_column.name)
        # Ranges follow the table's sorting key when it starts with the model's primary key (user_profile's id):
        # ClickHouse then reads each range through its primary index. Otherwise they follow the object key.
        self.range_column, self.range_field = self._range()
        # Integer object keys sort alike in every database, so a ClickHouse range holds exactly the LMS range's
        # objects plus any extra ones. Text keys may sort differently (collations): they are looked up by value,
        # and extra objects are found by one more pass over ClickHouse's keys.
        self.by_range = isinstance(self.range_column, col.Int32)

    def _object_column(self) -> col.Column:
        pk_names = {"pk", self.sink.get_model()._meta.pk.name}
        lookup = {self.sink.lookup} | (pk_names if self.sink.lookup in pk_names else set())
        for column in self.columns:
            if len(column.sources) == 1 and column.sources[0] in lookup:
                return column
        raise ReconcileError(f"{self.sink.name}: no column of {self.target} holds the object key {self.sink.lookup!r}")

    def _range(self) -> tuple[col.Column, str]:
        pk = self.sink.get_model()._meta.pk.name
        first_key = self.columns[self.key_positions[0]]
        if isinstance(first_key, col.Int32) and first_key.sources in ((pk,), ("pk",)):
            return first_key, pk
        return self.object_column, self.sink.lookup

    # -- the LMS side ---------------------------------------------------------------------------

    def lms_ranges(self, range_size: int) -> Iterator[tuple[Any, Any]]:
        """(after, up_to] bounds of the object keys, about ``range_size`` rows each; None is open."""
        lookup = self.range_field
        queryset = self.sink.queryset().order_by(lookup)
        after = None
        while True:
            rest = queryset if after is None else queryset.filter(**{f"{lookup}__gt": after})
            up_to = next(iter(rest.values_list(lookup, flat=True)[range_size - 1 : range_size]), None)
            yield after, up_to
            if up_to is None:
                return
            after = up_to

    def lms_side(self, after: Any, up_to: Any) -> Side:
        bounds = {}
        if after is not None:
            bounds[f"{self.range_field}__gt"] = after
        if up_to is not None:
            bounds[f"{self.range_field}__lte"] = up_to
        batch = self.sink.serialize(self.sink.queryset().filter(**bounds), Stamp(version=0))
        positions = [batch.column_names.index(column.name) for column in self.columns]
        return self._side(zip(*(batch.columns[i] for i in positions)) if batch.row_count else ())

    # -- the ClickHouse side --------------------------------------------------------------------

    def clickhouse_side(self, after: Any, up_to: Any, objects: Sequence[Any]) -> Side:
        selected = ", ".join(schema.quote(column.name) for column in self.columns)
        parameters: dict[str, Any] = {}
        if self.by_range:
            target = schema.quote(self.range_column.name)
            conditions = []
            if after is not None:
                conditions.append(f"{target} > {{after:Int64}}")
                parameters["after"] = int(after)
            if up_to is not None:
                conditions.append(f"{target} <= {{up_to:Int64}}")
                parameters["up_to"] = int(up_to)
            where = " AND ".join(conditions) or "1"
        else:
            target = schema.quote(self.object_column.name)
            where = f"{target} IN {{objects:Array({self.object_column.clickhouse_type})}}"
            parameters["objects"] = [self.object_column.convert(each) for each in objects]
        rows = self.transport.rows(f"SELECT {selected} FROM {self.target} FINAL WHERE {where}", parameters)
        return self._side(rows)

    def distinct_objects(self) -> list:
        """Every object key in the ClickHouse table (used for text keys, whose objects are few: courses)."""
        target = schema.quote(self.object_column.name)
        return [row[0] for row in self.transport.rows(f"SELECT DISTINCT {target} FROM {self.target} FINAL")]

    def _side(self, rows) -> Side:
        found: dict[tuple, tuple[int, str]] = {}
        raw: dict[tuple, tuple] = {}
        objects: dict[str, Any] = {}
        for row in rows:
            key = tuple(row[i] for i in self.key_positions)
            canonical_key = tuple(canonical(value) for value in key)
            object_value = row[self.object_position]
            object_id = canonical(object_value)
            found[canonical_key] = (row_hash(row), object_id)
            raw[canonical_key] = key
            objects[object_id] = object_value
        return Side(found, raw, objects)

    def delete_rows(self, keys: Sequence[tuple]) -> None:
        """Delete these rows (by the table's key) with one mutation."""
        names = [schema.quote(name) for name in self.table.key]
        if len(names) == 1:
            condition = f"{names[0]} IN {{keys:Array({self.key_types[0]})}}"
            values: list = [key[0] for key in keys]
        else:
            condition = f"({', '.join(names)}) IN {{keys:Array(Tuple({', '.join(self.key_types)}))}}"
            values = [tuple(key) for key in keys]
        target = schema.qualified(schema.storage_table(self.table.name), self.transport.config.database)
        settings = {"mutations_sync": 1, **schema.mutation_settings()}
        self.transport.command(
            f"ALTER TABLE {target}{schema.on_cluster()} DELETE WHERE {condition}", {"keys": values}, settings
        )


def reconcile(
    sink: Sink,
    transport: ClickHouseTransport,
    *,
    repair: bool = False,
    range_size: int = DEFAULT_RANGE_SIZE,
    progress: ProgressReporter | None = None,
) -> Reconciliation:
    """Compare one sink's table with the LMS, range by range; with ``repair``, fix what differs."""
    if not comparable(sink):
        raise ReconcileError(f"{sink.name} cannot be compared: it writes {sink.description or 'no rows'}")
    comparison = SinkComparison(sink, transport)
    result = Reconciliation(sink.name, comparison.target)
    progress = progress or SilentProgress()
    progress.start(sink.name, sink.queryset().count())
    for after, up_to in comparison.lms_ranges(range_size):
        lms = comparison.lms_side(after, up_to)
        clickhouse = comparison.clickhouse_side(after, up_to, list(lms.objects.values()))
        result.ranges += 1
        result.lms_rows += len(lms.rows)
        result.clickhouse_rows += len(clickhouse.rows)
        if lms.summary != clickhouse.summary:
            result.differing_ranges += 1
            _settle(comparison, _differences(lms, clickhouse), result, repair=repair)
        progress.advance(len(lms.rows))
    if not comparison.by_range:
        _extra_text_objects(comparison, result, repair=repair)
    progress.finish()
    return result


def reconcile_all(
    transport: ClickHouseTransport,
    names: Sequence[str] = (),
    *,
    repair: bool = False,
    range_size: int = DEFAULT_RANGE_SIZE,
    progress: ProgressReporter | None = None,
) -> list[Reconciliation]:
    """Every enabled comparable sink (or those named), in backfill order."""
    sinks = (
        [all_sinks()[name] for name in names]
        if names
        else [sink for sink in all_sinks().values() if comparable(sink) and sink.is_enabled()]
    )
    return [reconcile(sink, transport, repair=repair, range_size=range_size, progress=progress) for sink in sinks]


@dataclass
class _Differences:
    """The objects of one range that differ, and the ClickHouse rows (raw keys) the LMS does not have."""

    missing: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    extra: set[str] = field(default_factory=set)
    extra_rows: dict[str, list[tuple]] = field(default_factory=dict)


def _differences(lms: Side, clickhouse: Side) -> _Differences:
    found = _Differences()
    present = {object_id for _, object_id in clickhouse.rows.values()}
    for key, (hash_, object_id) in lms.rows.items():
        other = clickhouse.rows.get(key)
        if other is None:
            (found.stale if object_id in present else found.missing).add(object_id)
        elif other[0] != hash_:
            found.stale.add(object_id)
    for key, (_, object_id) in clickhouse.rows.items():
        if key not in lms.rows:
            (found.stale if object_id in lms.objects else found.extra).add(object_id)
            found.extra_rows.setdefault(object_id, []).append(clickhouse.raw_keys[key])
    found.missing -= found.stale
    return found


def _settle(comparison: SinkComparison, found: _Differences, result: Reconciliation, *, repair: bool) -> None:
    """Count what differs, leaving out objects the drains are sending; with ``repair``, queue and delete."""
    name = comparison.sink.name
    differing = found.missing | found.stale | found.extra
    in_flight = _pending_objects(name, differing)
    result.in_flight += len(in_flight)
    missing, stale, extra = (sorted(each - in_flight) for each in (found.missing, found.stale, found.extra))
    result.note("missing", missing)
    result.note("stale", stale)
    result.note("extra", extra)
    doomed = [key for object_id, keys in found.extra_rows.items() if object_id not in in_flight for key in keys]
    result.extra_rows += len(doomed)
    if not repair:
        return
    to_send = missing + stale
    if to_send:
        with transaction.atomic():
            result.queued += outbox.enqueue(name, to_send)
    for start in range(0, len(doomed), DEFAULT_RANGE_SIZE):
        chunk = doomed[start : start + DEFAULT_RANGE_SIZE]
        comparison.delete_rows(chunk)
        result.deleted_rows += len(chunk)
    if to_send or doomed:
        log.warning(
            "aspects_sink reconcile: %s: queued %d objects (%d missing, %d stale), deleted %d extra rows",
            name, len(to_send), len(missing), len(stale), len(doomed),
        )  # fmt: skip


def _extra_text_objects(comparison: SinkComparison, result: Reconciliation, *, repair: bool) -> None:
    """For text object keys: objects in ClickHouse the LMS does not have, checked a chunk at a time."""
    values = comparison.distinct_objects()  # text keys are courses: thousands, not millions
    lookup = comparison.sink.lookup
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        known = {
            canonical(comparison.object_column.convert(value))
            for value in comparison.sink.queryset()
            .filter(**{f"{lookup}__in": [canonical(v) for v in chunk]})
            .values_list(lookup, flat=True)
        }
        gone = [value for value in chunk if canonical(value) not in known]
        if not gone:
            continue
        side = comparison.clickhouse_side(None, None, gone)
        found = _Differences(extra={object_id for _, object_id in side.rows.values()})
        for key, (_, object_id) in side.rows.items():
            found.extra_rows.setdefault(object_id, []).append(side.raw_keys[key])
        _settle(comparison, found, result, repair=repair)


def _pending_objects(sink_name: str, object_ids: set[str]) -> set[str]:
    """Those of ``object_ids`` with a pending outbox entry: the drains will send their current state."""
    pending: set[str] = set()
    ordered = sorted(object_ids)
    entries = OutboxEntry.objects.filter(sink=sink_name, state=LeasedEntry.PENDING)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        pending.update(entries.filter(object_id__in=chunk).values_list("object_id", flat=True))
    return pending
