"""
One sink's objects as a backfill reads them: pages of primary keys in key order, and the rows of a page.

Pages are found by keyset pagination (``pk > last ORDER BY pk LIMIT n``), never by COUNT and OFFSET, so
each page costs the same however deep into a table of millions it is, and a page can be named by the last
key it holds, which is what a checkpoint stores. The rows themselves come from the sink's own code, the
same as the live path's. Without ``--force`` a page keeps only the objects whose rows differ from the latest
ones ClickHouse holds, compared page by page (``ChangeTracking``).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from aspects_sink.sinks import columns as col
from aspects_sink.sinks import schema
from aspects_sink.sinks.base import ModelSink, SerializationError, Sink, Stamp
from aspects_sink.sinks.digests import SEPARATOR, base_type, joined_sql, text_sql, texts
from aspects_sink.transport import ClickHouseTransport, ColumnBatch


class BackfillError(Exception):
    """The backfill cannot start as asked (a bad id, an object that cannot be dumped); the message says why."""


def dumpable(sink: Sink) -> bool:
    """Sinks whose rows come from a model can be backfilled; retirement's mutations have no rows to dump."""
    return isinstance(sink, ModelSink)


@dataclass(frozen=True)
class Page:
    """
    Keys read in one step, after ``start`` up to and including ``last``. ``keys`` are those to dump;
    ``examined`` counts every key read, so ``examined - len(keys)`` were skipped as unchanged. When no key
    was skipped the page is a whole range, which one range query reads. ``rows`` holds the page's rows as
    the sink's ``fetch`` returns them when the query that found the keys read the rows too.
    """

    start: Any
    last: Any
    keys: list
    examined: int
    rows: dict[str, Sequence] | None = None

    @property
    def whole_range(self) -> bool:
        return len(self.keys) == self.examined

    @property
    def skipped(self) -> int:
        return self.examined - len(self.keys)


# Objects named in one IN list when a page's rows cannot be found by a range: their values travel as query parameters.
KEYS_PER_QUERY = 1000
_COMPARISON_STAMP = Stamp(version=0, dumped_at=datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC))
_INTEGER_TYPES = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField"}


class ChangeTracking:
    """
    Which objects of a page differ from what ClickHouse holds, so that a backfill without ``--force`` sends only
    those: on a table Aspects' migrations created (no ``version``) each object sent adds a row for good.

    For each page, one query (a range of the primary key when the table holds it, else IN lists of at most
    ``KEYS_PER_QUERY`` keys) reads the latest row of each of the page's keys — the greatest ``version``, or on a
    table without one the greatest ``time_last_dumped``, as Aspects' readers pick it — as an MD5 digest of the
    columns the sink sends and the table has. The page's objects are serialized by the sink's own code and
    digested the same way; an object is sent when its digest differs or ClickHouse has no row for it. Any doubt
    (an object that cannot be serialized, a value written differently) sends the object: it is never skipped
    unless ClickHouse holds exactly what would be sent.
    """

    def __init__(self, sink: ModelSink, pk):
        self.sink = sink
        pk_sources = {(pk.name,), (pk.attname,), ("pk",)}
        self.pk_column = next((column for column in sink.columns if column.sources in pk_sources), None)
        self.by_range = (
            self.pk_column is not None
            and pk.get_internal_type() in _INTEGER_TYPES
            and base_type(self.pk_column.clickhouse_type).startswith(("Int", "UInt"))
        )
        self.transport: ClickHouseTransport | None = None
        self.compared: tuple[col.Column, ...] = ()
        self.key_positions: tuple[int, ...] = ()
        self.latest_by: str | None = None

    def load(self, transport: ClickHouseTransport) -> None:
        """Learn which of the sink's columns the table has and which column says what its latest row is."""
        existing = transport.table_columns(transport.qualified(self.sink.table))
        self.transport = transport
        self.compared = tuple(column for column in self.sink.columns if column.name in existing)
        names = [column.name for column in self.compared]
        if all(key in names for key in self.sink.key):
            self.key_positions = tuple(names.index(key) for key in self.sink.key)
            self.latest_by = next((name for name in ("version", "time_last_dumped") if name in existing), None)

    @property
    def filter_column(self) -> col.Column:
        """The column a page's rows are found by: the primary key's, else the first of the sink's key."""
        return self.pk_column or next(column for column in self.compared if column.name == self.sink.key[0])

    def changed(self, fetched: dict[str, Sequence], after: Any) -> list[bool]:
        """For each object of a page (as the sink's ``fetch`` read it, primary key along), whether to send it."""
        if self.transport is None:
            raise RuntimeError("ChangeTracking.load() must run first")
        count = len(fetched["pk"])
        if self.latest_by is None:  # nothing tells which row of a key is the latest one
            return [True] * count
        held = self._held_by_range(after, fetched["pk"][-1]) if self.by_range else None
        if held is not None and not held:
            return [True] * count
        try:
            batch = self.sink.serialize_fetched(fetched, _COMPARISON_STAMP)
        except SerializationError:  # the runner finds and names the object at fault
            return [True] * count
        data = dict(zip(batch.column_names, batch.columns))
        written = [texts(column, data[column.name]) for column in self.compared]
        keys = list(zip(*(written[position] for position in self.key_positions)))
        if held is None:
            held = self._held_in(data[self.filter_column.name])
        # A row without a digest (a NUL in its texts) is always sent: ``held.get`` is None for a key ClickHouse lacks.
        return [
            digest is None or held.get(key) != digest for key, digest in zip(keys, map(self._digest, zip(*written)))
        ]

    def _digest(self, row: tuple[str, ...]) -> str | None:
        """
        The MD5 digest of a row's joined texts; None (never equal to ClickHouse's) if the texts hold a NUL: a row
        whose values hold a NUL themselves, or a NULL (written as NUL), is always sent, since only rows with exactly
        one NUL between each two values can be told apart by their joined text.
        """
        joined = SEPARATOR.join(row)
        if joined.count(SEPARATOR) != len(row) - 1:
            return None
        return hashlib.md5(joined.encode("utf-8", "surrogatepass")).hexdigest()

    def _query(self, condition: str) -> str:
        keys = [self.compared[position] for position in self.key_positions]
        digest = f"lower(hex(MD5({joined_sql(self.compared)})))"
        table = schema.qualified(self.sink.table, self.transport.config.database)
        return (
            f"SELECT {', '.join(text_sql(column) for column in keys)}, "
            f"argMax({digest}, {schema.quote(self.latest_by)}) FROM {table} WHERE {condition} "
            f"GROUP BY {', '.join(schema.quote(column.name) for column in keys)}"
        )

    def _digests(self, sql: str, parameters: dict) -> dict[tuple, str]:
        return {tuple(row[:-1]): row[-1] for row in self.transport.rows(sql, parameters)}

    def _held_by_range(self, after: Any, last: Any) -> dict[tuple, str]:
        """The latest rows' digests of the keys in ``after < pk <= last``."""
        name = schema.quote(self.pk_column.name)
        condition = f"{name} <= {{last:Int64}}" + (f" AND {name} > {{after:Int64}}" if after is not None else "")
        parameters = {"last": int(last)} if after is None else {"last": int(last), "after": int(after)}
        return self._digests(self._query(condition), parameters)

    def _held_in(self, values: Sequence[Any]) -> dict[tuple, str]:
        """The latest rows' digests of the keys whose filter column holds one of ``values``."""
        column = self.filter_column
        condition = f"{schema.quote(column.name)} IN {{values:Array({base_type(column.clickhouse_type)})}}"
        sql, held = self._query(condition), {}
        distinct = list(dict.fromkeys(values))
        for start in range(0, len(distinct), KEYS_PER_QUERY):
            held.update(self._digests(sql, {"values": distinct[start : start + KEYS_PER_QUERY]}))
        return held


class BackfillSource:
    """
    The objects of one sink a backfill selects: all of them or ``ids``, minus ``ids_to_skip``, and when
    ``only_changed`` only those whose state differs from what ClickHouse holds (``ChangeTracking``).

    The rows of a page are the live path's: ``writes_for`` when the sink is looked up by primary key (so a
    course brings its blocks), else the sink's ``serialize`` of the page's queryset.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        ids: Sequence[str] = (),
        ids_to_skip: Sequence[str] = (),
        only_changed: bool = False,
    ):
        if not isinstance(sink, ModelSink):
            raise BackfillError(f"{sink.name} cannot be dumped: it writes {sink.description or 'no rows'}")
        self.sink = sink
        self.pk = sink.get_model()._meta.pk
        self.keyed_by_pk = sink.lookup in ("pk", self.pk.name, self.pk.attname)
        if not self.keyed_by_pk and type(sink).writes_for is not ModelSink.writes_for:
            raise BackfillError(
                f"{sink.name} cannot be dumped: it overrides writes_for but is looked up by {sink.lookup!r}, "
                "not by primary key, so a page of keys cannot go through it"
            )
        self.ids = self.parse_keys(ids)
        self.ids_to_skip = self.parse_keys(ids_to_skip)
        self.change_tracking = ChangeTracking(sink, self.pk) if only_changed else None
        self.batch_limit = sink.objects_per_batch  # whatever --batch_size says, to keep memory flat
        # A sink serialized from its rows alone, whose columns include the primary key, reads a page's keys
        # and rows with one query; for the others the keys come first, then their rows or writes.
        self.key_source = self._pk_source() if not self.keyed_by_pk and self.change_tracking is None else None

    def _pk_source(self) -> str | None:
        sources = (source for column in self.sink.columns for source in column.sources)
        return next((source for source in sources if source in ("pk", self.pk.name)), None)

    @property
    def name(self) -> str:
        return self.sink.name

    def parse_key(self, value: Any) -> Any:
        """A key from the command line or a checkpoint, as the model field holds it; ValueError if malformed."""
        try:
            parsed = self.pk.to_python(value.strip() if isinstance(value, str) else value)
        except Exception as error:  # ValidationError, or the key library's own (InvalidKeyError for courses)
            raise ValueError(str(value)) from error
        if parsed is None:
            raise ValueError(str(value))
        return parsed

    def parse_keys(self, values: Sequence[str]) -> list:
        parsed, malformed = [], []
        for value in values:
            try:
                parsed.append(self.parse_key(value))
            except ValueError:
                malformed.append(str(value))
        if malformed:
            raise BackfillError(f"malformed {self.name} ids: {', '.join(malformed)}")
        return parsed

    def missing_ids(self) -> list[str]:
        """The requested ``ids`` that match no object of the sink."""
        found = {str(key) for key in self.sink.queryset().filter(pk__in=self.ids).values_list("pk", flat=True)}
        return [str(key) for key in self.ids if str(key) not in found]

    def queryset(self):
        """The sink's queryset with the selection applied."""
        queryset = self.sink.queryset()
        if self.ids:
            queryset = queryset.filter(pk__in=self.ids)
        if self.ids_to_skip:
            queryset = queryset.exclude(pk__in=self.ids_to_skip)
        return queryset

    def between(self, after: Any = None, up_to: Any = None):
        """Selected objects with ``after < pk <= up_to`` (either bound may be open), in key order."""
        bounds = Q()
        if after is not None:
            bounds &= Q(pk__gt=after)
        if up_to is not None:
            bounds &= Q(pk__lte=up_to)
        return self.queryset().filter(bounds).order_by("pk")

    def count(self, after: Any = None, up_to: Any = None) -> int:
        return self.between(after, up_to).count()

    def prepare(self, transport: ClickHouseTransport) -> None:
        """Learn the table the selection compares with, when it depends on what ClickHouse holds."""
        if self.change_tracking is not None:
            self.change_tracking.load(transport)

    def pages(
        self,
        batch_size: int,
        after: Any = None,
        up_to: Any = None,
        *,
        limit: int | None = None,
        pause: Callable[[], None] | None = None,
        with_rows: bool = True,
    ) -> Iterator[Page]:
        """
        Pages of at most ``batch_size`` keys to dump, in key order, until ``up_to`` or until ``limit`` keys
        have been given; ``pause`` runs between two reads (``--sleep_time``). A page cut short by the limit
        ends at its last key, so a checkpoint taken after it leaves the rest for later. Each page is read
        when asked for, so a row version taken before asking is older than the rows (ADR 0002).
        ``with_rows=False`` gives keys only, even where the query that found them read the rows along.
        """
        size = min(batch_size, self.batch_limit or batch_size)
        remaining = limit
        while remaining is None or remaining > 0:
            page = self._page(after, up_to, size, remaining, with_rows)
            if page is None:
                return
            if remaining is not None:
                remaining -= len(page.keys)
            yield page
            if page.examined < size or remaining == 0:
                return
            after = page.last
            if pause:
                pause()

    def _page(self, after: Any, up_to: Any, size: int, remaining: int | None, with_rows: bool) -> Page | None:
        """
        The next page: its keys (with their rows, when a query read them and the runner can use them), less the
        objects ClickHouse already holds as they are, and cut at ``remaining`` keys.
        """
        page = self.between(after, up_to)[:size]
        rows, send = None, None
        if self.change_tracking is not None:
            fetched = self.sink.fetch(page, also=("pk",))
            read = list(fetched["pk"])
            if read:
                send = self.change_tracking.changed(fetched, after)
            rows = fetched if with_rows and not self.keyed_by_pk else None
        elif with_rows and self.key_source:
            rows = self.sink.fetch(page)
            read = list(rows[self.key_source])
        else:
            read = list(page.values_list("pk", flat=True))
        if not read:
            return None
        kept = [index for index, sent in enumerate(send) if sent] if send is not None else list(range(len(read)))
        examined = len(read)
        if remaining is not None and len(kept) >= remaining:
            kept = kept[:remaining]
            examined = kept[-1] + 1
        if rows is not None and len(kept) < len(read):
            rows = {source: [values[index] for index in kept] for source, values in rows.items()}
        keys = [read[index] for index in kept]
        return Page(start=after, last=read[examined - 1], keys=keys, examined=examined, rows=rows)

    def writes(
        self,
        keys: Sequence,
        stamp: Stamp,
        span: tuple[Any, Any] | None = None,
        rows: dict[str, Sequence] | None = None,
    ) -> list[ColumnBatch]:
        """
        The rows for these objects: from ``rows`` when the page read them already, else read by range when
        ``span`` (exclusive start, inclusive end) holds exactly these objects, else by key. The sink's own
        table comes last: it is the table a later run reads to learn what is already there, so it must not
        claim an object whose other rows did not arrive.
        """
        if self.keyed_by_pk:  # its rows only: objects deleted since the page was read are the live path's to delete
            batches = [write for write in self.sink.writes_for(list(keys), stamp) if isinstance(write, ColumnBatch)]
        elif rows is not None:
            batches = [self.sink.serialize_fetched(rows, stamp)]
        else:
            queryset = self.between(*span) if span else self.queryset().filter(pk__in=list(keys))
            batches = [self.sink.serialize(queryset, stamp)]
        return sorted(batches, key=lambda batch: batch.table == self.sink.table)

    def own_rows(self, batches: Sequence[ColumnBatch]) -> int:
        """Rows written to the sink's own table: the objects sent."""
        return sum(batch.row_count for batch in batches if batch.table == self.sink.table)
