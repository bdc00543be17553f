"""
One sink's objects as a backfill reads them: pages of primary keys in key order, and the rows of a page.

Pages are found by keyset pagination (``pk > last ORDER BY pk LIMIT n``), never by COUNT and OFFSET, so
each page costs the same however deep into a table of millions it is, and a page can be named by the last
key it holds, which is what a checkpoint stores. The rows themselves come from the sink's own code, the
same as the live path's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from aspects_sink.sinks import columns as col
from aspects_sink.sinks import schema
from aspects_sink.sinks.base import ModelSink, Sink, Stamp
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


class ChangeTracking:
    """
    Which objects changed since their last dump, for sinks whose table has a ``modified`` column (courses).

    The last dump of every object is read from ClickHouse with one query for the whole table, the first
    time it is needed, and compared with the model's own ``modified`` value converted as the sink converts
    it, so equal means "already there".
    """

    COLUMN = "modified"

    def __init__(self, sink: ModelSink, key_column: col.Column, modified_column: col.Column):
        self.sink = sink
        self.key_column = key_column
        self.modified_column = modified_column
        self._last_dumped: dict[str, str] | None = None

    @classmethod
    def of(cls, sink: ModelSink, pk_name: str) -> ChangeTracking | None:
        """The sink's change tracking, or None if its rows carry no modification time or no primary key."""
        modified = next((column for column in sink.columns if column.name == cls.COLUMN), None)
        key = next((column for column in sink.columns if column.sources in ((pk_name,), ("pk",))), None)
        if modified is None or key is None or len(modified.sources) != 1:
            return None
        return cls(sink, key, modified)

    @property
    def model_field(self) -> str:
        return self.modified_column.sources[0]

    def load(self, transport: ClickHouseTransport) -> None:
        key, modified = schema.quote(self.key_column.name), schema.quote(self.modified_column.name)
        table = schema.qualified(self.sink.table, transport.config.database)
        rows = transport.rows(f"SELECT {key}, max({modified}) FROM {table} GROUP BY {key}")
        self._last_dumped = dict(rows)

    def changed(self, key: Any, modified: Any) -> bool:
        if self._last_dumped is None:
            raise RuntimeError("ChangeTracking.load() must run first")
        return self._last_dumped.get(self.key_column.convert(key)) != self.modified_column.convert(modified)


class BackfillSource:
    """
    The objects of one sink a backfill selects: all of them or ``ids``, minus ``ids_to_skip``, and only
    those changed since their last dump when ``only_changed`` and the sink tracks changes.

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
        self.change_tracking = ChangeTracking.of(sink, self.pk.name) if only_changed else None
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
        """Read what ClickHouse already holds, if the selection depends on it (one query)."""
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
        ``with_rows=False`` reads keys only, even where one query could read the rows along.
        """
        size = min(batch_size, self.batch_limit or batch_size)
        read_page = self._rows_page if with_rows and self.key_source else self._keys_page
        remaining = limit
        while remaining is None or remaining > 0:
            page = read_page(after, up_to, size, remaining)
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

    def _rows_page(self, after: Any, up_to: Any, size: int, remaining: int | None) -> Page | None:
        rows = self.sink.fetch(self.between(after, up_to)[:size])
        keys = list(rows[self.key_source])
        if not keys:
            return None
        if remaining is not None and len(keys) > remaining:
            keys = keys[:remaining]
            rows = {source: values[:remaining] for source, values in rows.items()}
        return Page(start=after, last=keys[-1], keys=keys, examined=len(keys), rows=rows)

    def _keys_page(self, after: Any, up_to: Any, size: int, remaining: int | None) -> Page | None:
        tracking = self.change_tracking
        fields = ("pk", tracking.model_field) if tracking else ("pk",)
        read = list(self.between(after, up_to).values_list(*fields)[:size])
        if not read:
            return None
        keys = [row[0] for row in read if not tracking or tracking.changed(*row)]
        examined = len(read)
        if remaining is not None and len(keys) >= remaining:
            keys = keys[:remaining]
            examined = next(i for i, row in enumerate(read, start=1) if row[0] == keys[-1])
        return Page(start=after, last=read[examined - 1][0], keys=keys, examined=examined)

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
