"""
Prove that ClickHouse holds what the LMS holds: compare each sink's current rows (after FINAL; on Aspects' own
tables, each key's row of the greatest ``time_last_dumped``) with the LMS by ranges of the sink's object keys, and
find the objects that are missing, extra or stale.

A range is a slice of the sink's rows in key order, about ``range_size`` rows long: by the table's own key when it
starts with the model's primary key (ClickHouse then reads the range through its primary index), else by the
object key (``lookup``, the id the outbox names: a user id, a course key). Each row is digested the same way on
both sides (:mod:`aspects_sink.sinks.digests`, as the backfill's change tracking does): its sent columns written
as text, joined and hashed with MD5. The LMS rows are serialized by the sink's own code (as the drains and the
backfill send them) and digested in Python; ClickHouse digests its current rows itself and returns only
the range's count and the sum of its digests, so no row travels back while ranges agree. Equal counts and equal
sums mean equal ranges; otherwise ClickHouse's per-row digests of the range are read and compared by the table's
key to name the differing objects. Memory holds one range at a time, whatever the size of the table.

Reads in the LMS are plain SELECTs in autocommit (no locking reads, no long transaction), so the platform never
waits on them. Objects with a pending outbox entry are on their way and only counted as "in flight". ``repair``
queues the missing and stale objects in the outbox (the drains send their current state) and deletes the extra
rows with one mutation per range.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from aspects_sink import outbox
from aspects_sink.models import LeasedEntry, OutboxEntry
from aspects_sink.progress import ProgressReporter, SilentProgress
from aspects_sink.sinks import columns as col
from aspects_sink.sinks import digests, schema
from aspects_sink.sinks.base import ModelSink, Sink, Stamp
from aspects_sink.sinks.registry import all_sinks
from aspects_sink.transport import ClickHouseTransport

log = logging.getLogger(__name__)

DEFAULT_RANGE_SIZE = 10_000
# Ranges ClickHouse sums with one query: each row's range is found among this many bounds (``clickhouse_summaries``).
RANGES_PER_QUERY = 100
EXAMPLES_KEPT = 20
_CHUNK = 900  # stay under SQLite's bound on parameters per statement
_MASK = (1 << 128) - 1  # ClickHouse's sum of UInt128 digests wraps around at 128 bits


class ReconcileError(Exception):
    """A sink cannot be compared (no rows of its own, no key column in its table); the message says why."""


def comparable(sink: Sink) -> bool:
    """Sinks whose rows come from one model can be compared; retirement writes mutations, xAPI has no model."""
    return isinstance(sink, ModelSink)


@dataclass(frozen=True)
class Summary:
    """A range in brief: its row count and the sum of its rows' digests. Equal summaries mean equal ranges."""

    rows: int
    digest_sum: int

    @classmethod
    def of(cls, row_digests: Sequence[int]) -> Summary:
        return cls(len(row_digests), sum(row_digests) & _MASK)


@dataclass(frozen=True)
class Rows:
    """
    One side of a differing range, row by row, each row named by its key written as text (``digests.texts``, alike
    on both sides): its digest, its object (as text: what the outbox names) and its key as ClickHouse types it.
    """

    digests: dict[tuple, int]
    objects: dict[tuple, str]
    raw_keys: dict[tuple, tuple]


@dataclass(frozen=True)
class LmsRange:
    """The LMS rows of one range: the sent columns' values as the sink serializes them, and each row's digest."""

    data: Sequence[Sequence[Any]]
    digests: list[int]

    @property
    def summary(self) -> Summary:
        return Summary.of(self.digests)


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
    in_flight: int = 0  # differing objects the drains are sending (an entry pending), or made since read
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
        # An object's current row: the greatest ``version`` on the plugin's own tables (FINAL merges them); on tables
        # Aspects' migrations created (no ``version``; plain MergeTree refuses FINAL, and user_profile's keeps a row
        # per dump) the greatest ``time_last_dumped``, as Aspects' readers take it.
        self.latest_by = "time_last_dumped" if "version" not in existing and "time_last_dumped" in existing else None
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
        """
        (after, up_to] bounds of the range keys, about ``range_size`` rows each; None is open. Found in the model's
        own table, without the sink's filters and joins (one index walk each): a bound only cuts, the ranges read
        the sink's rows.
        """
        lookup = self.range_field
        keys = self.sink.get_model()._default_manager.order_by(lookup).values_list(lookup, flat=True)
        after = None
        while True:
            rest = keys if after is None else keys.filter(**{f"{lookup}__gt": after})
            up_to = next(iter(rest[range_size - 1 : range_size]), None)
            yield after, up_to
            if up_to is None:
                return
            after = up_to

    def in_lms(self, object_ids: Iterable[str]) -> set[str]:
        """Which of these objects the sink reads in the LMS now: read again, one made since its range was read."""
        field = self.object_column.sources[0]
        wanted = sorted(object_ids)
        found = self.sink.queryset().filter(**{f"{field}__in": wanted}).values_list(field, flat=True)
        return {str(value) for value in found}

    def lms_range(self, after: Any, up_to: Any) -> LmsRange:
        """The range's rows as the drains and the backfill send them, and their digests."""
        bounds = {}
        if after is not None:
            bounds[f"{self.range_field}__gt"] = after
        if up_to is not None:
            bounds[f"{self.range_field}__lte"] = up_to
        batch = self.sink.serialize(self.sink.queryset().filter(**bounds), Stamp(version=0))
        if not batch.row_count:
            return LmsRange([[] for _ in self.columns], [])
        data = [batch.columns[batch.column_names.index(column.name)] for column in self.columns]
        return LmsRange(data, digests.digests(self.columns, data))

    def lms_rows(self, lms: LmsRange) -> Rows:
        """The range's LMS rows one by one, to compare with ClickHouse's."""
        return self._rows(lms.data, lms.digests)

    def object_text(self, value: Any) -> str:
        """An object's key (as ClickHouse or the sink holds it) as text, as the outbox names it."""
        return digests.texts(self.object_column, [value])[0]

    def lms_objects(self, lms: LmsRange) -> list:
        """The objects of the range's LMS rows, each once."""
        return list(dict.fromkeys(lms.data[self.object_position]))

    # -- the ClickHouse side --------------------------------------------------------------------

    def _where(self, after: Any, up_to: Any, objects: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """
        The clause selecting a range's rows in ClickHouse (after FINAL), and its parameters. When the column it
        filters on is one of the table's key columns, every version of a row has the same value there, so the
        filter may run before FINAL merges the versions: PREWHERE, which spares ClickHouse merging the whole table
        when the ranges do not follow its sorting key (enrollments' user ids).
        """
        column = self.range_column if self.by_range else self.object_column
        target = schema.quote(column.name)
        clause = "PREWHERE" if column.name in self.table.key else "WHERE"
        parameters: dict[str, Any] = {}
        if not self.by_range:
            parameters["objects"] = [column.convert(each) for each in objects]
            return f"{clause} {target} IN {{objects:Array({column.clickhouse_type})}}", parameters
        conditions = []
        if after is not None:
            conditions.append(f"{target} > {{after:Int64}}")
            parameters["after"] = int(after)
        if up_to is not None:
            conditions.append(f"{target} <= {{up_to:Int64}}")
            parameters["up_to"] = int(up_to)
        return f"{clause} {' AND '.join(conditions)}" if conditions else "", parameters

    def clickhouse_summary(self, objects: Sequence[Any]) -> Summary:
        """The count and digest sum of these objects' current rows (text keys), computed by ClickHouse."""
        where, parameters = self._where(None, None, objects)
        sql = f"SELECT count(), sum({digests.digest_sql(self.columns)}) FROM {self._current(where)}"
        rows, digest_sum = self.transport.rows(sql, parameters)[0]
        return Summary(int(rows), int(digest_sum) & _MASK)

    def clickhouse_summaries(self, ranges: Sequence[tuple[Any, Any]]) -> list[Summary]:
        """
        The count and digest sum of each of these consecutive integer ranges' current rows, computed by ClickHouse
        with one query: one pass over the rows whichever way the table is sorted (ranges by an object key that
        does not lead the table's key, as enrollments' user id, cannot be read through its primary index).
        A row's range is the number of the ranges' upper bounds below its key.
        """
        where, parameters = self._where(ranges[0][0], ranges[-1][1], ())
        parameters["bounds"] = [int(up_to) for _, up_to in ranges[:-1]]
        position = (
            f"arrayCount(upper_bound -> upper_bound < {schema.quote(self.range_column.name)}, {{bounds:Array(Int64)}})"
        )
        sql = (
            f"SELECT {position} AS position, count(), sum({digests.digest_sql(self.columns)}) "
            f"FROM {self._current(where)} GROUP BY position"
        )
        held = {
            int(index): Summary(int(rows), int(digest_sum) & _MASK)
            for index, rows, digest_sum in self.transport.rows(sql, parameters)
        }
        return [held.get(index, Summary(0, 0)) for index in range(len(ranges))]

    def clickhouse_rows(self, after: Any, up_to: Any, objects: Sequence[Any] = ()) -> Rows:
        """The range's current rows one by one: key, object and digest (computed by ClickHouse)."""
        where, parameters = self._where(after, up_to, objects)
        selected = [schema.quote(self.columns[i].name) for i in self.key_positions]
        selected += [schema.quote(self.object_column.name), digests.digest_sql(self.columns)]
        rows = self.transport.rows(f"SELECT {', '.join(selected)} FROM {self._current(where)}", parameters)
        *values, row_digests = zip(*rows) if rows else [()] * len(selected)
        data: list[Sequence[Any]] = [()] * len(self.columns)
        for position, column_values in zip([*self.key_positions, self.object_position], values):
            data[position] = column_values
        return self._rows(data, row_digests)

    def distinct_objects(self) -> list:
        """Every object key in the ClickHouse table (used for text keys, whose objects are few: courses)."""
        target = schema.quote(self.object_column.name)
        # Every row of an object holds its key: no need to pick the current ones first.
        return [row[0] for row in self.transport.rows(f"SELECT DISTINCT {target} FROM {self.target}")]

    def _current(self, where: str) -> str:
        """The FROM clause of the current rows (one per key) among those ``where`` selects."""
        if self.latest_by is None:
            return f"{self.target} FINAL {where}"
        keys = ", ".join(schema.quote(name) for name in self.table.key)
        latest = schema.quote(self.latest_by)
        return f"(SELECT * FROM {self.target} {where} ORDER BY {latest} DESC LIMIT 1 BY {keys})"

    def _rows(self, data: Sequence[Sequence[Any]], row_digests: Sequence[int]) -> Rows:
        """Rows from the values of the key and object columns (``data`` holds one sequence per column) and digests."""
        raw_keys = list(zip(*(data[i] for i in self.key_positions)))
        keys = list(zip(*(digests.texts(self.columns[i], data[i]) for i in self.key_positions)))
        objects = digests.texts(self.object_column, data[self.object_position])
        return Rows(dict(zip(keys, row_digests)), dict(zip(keys, objects)), dict(zip(keys, raw_keys)))

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
    """
    Compare one sink's table with the LMS, range by range; with ``repair``, fix what differs.

    Ranges by integer key are summed by ClickHouse, ``RANGES_PER_QUERY`` at a time, in a thread of its own while
    this one reads and digests the LMS ranges (ClickHouse works in its own process meanwhile); ranges of text keys
    are looked up by the objects of the LMS range, so after it.
    """
    if not comparable(sink):
        raise ReconcileError(f"{sink.name} cannot be compared: it writes {sink.description or 'no rows'}")
    comparison = SinkComparison(sink, transport)
    result = Reconciliation(sink.name, comparison.target)
    progress = progress or SilentProgress()
    progress.start(sink.name, sink.queryset().count())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aspects-sink-reconcile") as clickhouse:
        try:
            for after, up_to, held_summary in _ranges(comparison, range_size, clickhouse):
                lms = comparison.lms_range(after, up_to)
                held = held_summary() if held_summary else comparison.clickhouse_summary(comparison.lms_objects(lms))
                result.ranges += 1
                result.lms_rows += len(lms.digests)
                result.clickhouse_rows += held.rows
                if lms.summary != held:
                    result.differing_ranges += 1
                    held_rows = comparison.clickhouse_rows(after, up_to, comparison.lms_objects(lms))
                    _settle(comparison, _differences(comparison.lms_rows(lms), held_rows), result, repair=repair)
                progress.advance(len(lms.digests))
        finally:
            clickhouse.submit(transport.close)  # the thread's own client
    if not comparison.by_range:
        _extra_text_objects(comparison, result, repair=repair)
    progress.finish()
    return result


def _ranges(
    comparison: SinkComparison, range_size: int, executor: ThreadPoolExecutor
) -> Iterator[tuple[Any, Any, Callable[[], Summary] | None]]:
    """
    Each range's bounds, and for integer keys a call giving ClickHouse's summary of it: the query for the next
    ``RANGES_PER_QUERY`` ranges is queued as a group's ranges start, so it runs while they are read.
    """
    if not comparison.by_range:
        for after, up_to in comparison.lms_ranges(range_size):
            yield after, up_to, None
        return
    bounds = comparison.lms_ranges(range_size)
    group = list(itertools.islice(bounds, RANGES_PER_QUERY))
    summaries = executor.submit(comparison.clickhouse_summaries, group)
    while group:
        following = list(itertools.islice(bounds, RANGES_PER_QUERY))
        ahead = executor.submit(comparison.clickhouse_summaries, following) if following else None
        for index, (after, up_to) in enumerate(group):
            yield after, up_to, functools.partial(_summary, summaries, index)
        group, summaries = following, ahead


def _summary(summaries: Future[list[Summary]], index: int) -> Summary:
    return summaries.result()[index]


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


def _differences(lms: Rows, clickhouse: Rows) -> _Differences:
    """The objects whose rows differ: only rows whose key or digest differ are looked at one by one."""
    found = _Differences()
    present, lms_objects = set(clickhouse.objects.values()), set(lms.objects.values())
    for key in {key for key, _ in lms.digests.items() ^ clickhouse.digests.items()}:
        if key in lms.digests:
            object_id = lms.objects[key]
            (found.stale if key in clickhouse.digests or object_id in present else found.missing).add(object_id)
        if key not in lms.digests:
            object_id = clickhouse.objects[key]
            (found.stale if object_id in lms_objects else found.extra).add(object_id)
            found.extra_rows.setdefault(object_id, []).append(clickhouse.raw_keys[key])
    found.missing -= found.stale
    return found


def _settle(comparison: SinkComparison, found: _Differences, result: Reconciliation, *, repair: bool) -> None:
    """Count what differs, leaving out objects the drains are sending; with ``repair``, queue and delete."""
    name = comparison.sink.name
    differing = found.missing | found.stale | found.extra
    # Objects made (and sent) after their range was read from the LMS, before ClickHouse was: new, not extra.
    in_flight = _pending_objects(name, differing) | (comparison.in_lms(found.extra) if found.extra else set())
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
            comparison.object_text(comparison.object_column.convert(value))
            for value in comparison.sink.queryset()
            .filter(**{f"{lookup}__in": [comparison.object_text(v) for v in chunk]})
            .values_list(lookup, flat=True)
        }
        gone = [value for value in chunk if comparison.object_text(value) not in known]
        if not gone:
            continue
        held = comparison.clickhouse_rows(None, None, gone)
        found = _Differences(extra=set(held.objects.values()))
        for key, object_id in held.objects.items():
            found.extra_rows.setdefault(object_id, []).append(held.raw_keys[key])
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
