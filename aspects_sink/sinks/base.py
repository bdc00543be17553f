"""
What a sink is: a small declarative description of one kind of object and the ClickHouse rows it
becomes. A sink reads the platform (through ``aspects_sink.platform``) and returns column batches
or statements; it never talks to ClickHouse itself. Delivery and backfill hand its output to the
transport.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from django.conf import settings

from aspects_sink import platform, toggles
from aspects_sink.sinks import columns as col
from aspects_sink.transport import ColumnBatch

_DUMP_NAMESPACE = uuid.UUID("6f0b6c1e-3b1a-4b9e-9a53-7f0c1d0a5e11")


class SerializationError(ValueError):
    """An object could not be turned into a row; the message names the sink, the object and the column."""

    def __init__(self, sink_name: str, object_id: Any, detail: str):
        super().__init__(f"{sink_name} {object_id}: {detail}")
        self.sink_name = sink_name
        self.object_id = object_id


@dataclass(frozen=True)
class Stamp:
    """
    Bookkeeping shared by every row of one batch.

    ``version`` orders the states of an object: a number from the LMS database's sequence taken
    just before the rows were read (see docs/decisions/0002-row-versions.rst). The newest read
    wins in ReplacingMergeTree, and re-sending an unchanged object collapses into one row.
    """

    version: int
    dumped_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def dump_id(self, table: str) -> uuid.UUID:
        return uuid.uuid5(_DUMP_NAMESPACE, f"{table}:{self.version}")


BOOKKEEPING_COLUMNS = (
    col.UUID("dump_id"),
    col.String("time_last_dumped"),
    col.UInt64("version"),
)


@dataclass(frozen=True)
class Statement:
    """A parameterized statement a sink asks the transport to run (retirement's mutations)."""

    sql: str
    parameters: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    """A ClickHouse table a sink writes: columns (with bookkeeping), sorting key and user column."""

    name: str
    columns: tuple[col.Column, ...]
    key: tuple[str, ...]
    user_id_column: str | None = None

    @property
    def all_columns(self) -> tuple[col.Column, ...]:
        return self.columns + BOOKKEEPING_COLUMNS

    @property
    def pii_columns(self) -> tuple[col.Column, ...]:
        return tuple(column for column in self.columns if column.pii)

    def batch(self, data: Sequence[Sequence], stamp: Stamp) -> ColumnBatch:
        """Attach the bookkeeping columns to the sink's own column data."""
        rows = len(data[0]) if data else 0
        bookkeeping = ([stamp.dump_id(self.name)] * rows, [str(stamp.dumped_at)] * rows, [stamp.version] * rows)
        all_columns = self.all_columns
        return ColumnBatch(
            table=self.name,
            column_names=tuple(column.name for column in all_columns),
            column_types=tuple(column.clickhouse_type for column in all_columns),
            columns=(*data, *bookkeeping),
        )


class Sink:
    """
    Base for every sink. Subclasses set the class attributes; most need nothing else.

    ``name`` is what the CLI and the outbox call the sink; ``model`` is the key of the model it
    reads in ``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG``; ``lookup`` the field the live path's object ids
    refer to; ``saved_models`` the models (same keys) whose ``post_save`` re-sends the saved
    instance's ``lookup`` value; ``pii`` says that whole rows are personal data; ``order`` sorts a
    full backfill.
    """

    name: ClassVar[str]
    model: ClassVar[str]
    lookup: ClassVar[str] = "pk"
    saved_models: ClassVar[tuple[str, ...]] = ()
    # The setting holding the shortest time between two drains of this sink: few, large INSERTs.
    drain_interval_setting: ClassVar[str] = "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS"
    pii: ClassVar[bool] = False
    order: ClassVar[int] = 100
    description: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def tables(self) -> tuple[TableSpec, ...]:
        """The tables this sink writes (created by the schema command)."""
        return ()

    def is_enabled(self) -> bool:
        if self.pii and not toggles.pii_enabled():
            return False
        return toggles.sink_enabled(self.name)

    def get_model(self):
        return platform.get_model(self.model)

    @property
    def drain_interval(self) -> float:
        return float(getattr(settings, self.drain_interval_setting))

    @property
    def shows_user_fields(self) -> bool:
        """Whether rows carry fields of the User (username, email): a saved User must re-send them."""
        return False

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch | Statement]:
        """What to write to ClickHouse so it holds the current state of these objects."""
        raise NotImplementedError


class ModelSink(Sink):
    """
    A sink whose rows come straight from one model, one row per model instance.

    ``columns`` name their ORM sources; a batch is read with one ``values_list`` query and converted
    column by column. ``annotations`` add computed sources (e.g. a foreign key read as text, to avoid
    parsing course keys); ``key`` is the ClickHouse sorting key, one row per key after FINAL.
    """

    table: ClassVar[str]
    columns: ClassVar[tuple[col.Column, ...]]
    key: ClassVar[tuple[str, ...]]
    user_id_column: ClassVar[str | None] = None

    def annotations(self) -> dict[str, Any]:
        return {}

    @property
    def shows_user_fields(self) -> bool:
        return self.lookup == "user_id" and any(
            source.startswith("user__") for column in self.columns for source in column.sources
        )

    @cached_property
    def table_spec(self) -> TableSpec:
        return TableSpec(self.table, tuple(self.columns), tuple(self.key), self.user_id_column)

    def tables(self) -> tuple[TableSpec, ...]:
        return (self.table_spec,)

    @cached_property
    def _sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(source for column in self.columns for source in column.sources))

    def queryset(self):
        """
        Every object of the sink, with the annotations its columns read.

        Sinks whose rows retirement deletes (``EVENT_SINK_CLICKHOUSE_PII_MODELS``) never send a retired
        user again: the platform renames retired accounts with ``RETIRED_USERNAME_PREFIX``.
        """
        queryset = self.get_model()._default_manager.all()
        if self.user_id_column and self.name in getattr(settings, "EVENT_SINK_CLICKHOUSE_PII_MODELS", ()):
            prefix = getattr(settings, "RETIRED_USERNAME_PREFIX", "retired__user_")
            queryset = queryset.exclude(user__username__startswith=prefix)
        annotations = self.annotations()
        return queryset.annotate(**annotations) if annotations else queryset

    def queryset_for(self, object_ids: Iterable[Any]):
        return self.queryset().filter(**{f"{self.lookup}__in": list(object_ids)})

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch | Statement]:
        return [self.serialize(self.queryset_for(object_ids), stamp)]

    def fetch(self, queryset) -> dict[str, list]:
        """Read the batch with one query, as one list per ORM source."""
        rows = list(queryset.values_list(*self._sources))
        values = list(zip(*rows)) if rows else [() for _ in self._sources]
        return dict(zip(self._sources, values))

    def serialize(self, queryset, stamp: Stamp) -> ColumnBatch:
        """One column batch for everything ``queryset`` selects."""
        return self.serialize_fetched(self.fetch(queryset), stamp)

    def serialize_fetched(self, fetched: dict[str, Sequence], stamp: Stamp) -> ColumnBatch:
        blank_pii = not toggles.pii_enabled()
        data = []
        for column in self.columns:
            sources = column.sources
            values = fetched[sources[0]] if len(sources) == 1 else list(zip(*(fetched[s] for s in sources)))
            if blank_pii and column.pii:
                data.append([column.empty] * len(values))
            else:
                data.append(self._convert(column, values, fetched))
        return self.table_spec.batch(data, stamp)

    def _convert(self, column: col.Column, values: Sequence, fetched: dict[str, Sequence]) -> list:
        try:
            return column.convert_all(values)
        except (TypeError, ValueError, AttributeError) as error:
            raise self._conversion_error(column, values, fetched, error) from error

    def _conversion_error(self, column, values, fetched, error) -> SerializationError:
        """Find the first object whose value failed, so the error names it."""
        ids = fetched.get(self.lookup) or fetched.get(self._sources[0]) or [None] * len(values)
        for object_id, value in zip(ids, values):
            try:
                column.convert(value)
            except (TypeError, ValueError, AttributeError) as row_error:
                return SerializationError(self.name, object_id, f"column {column.name}: {row_error}")
        return SerializationError(self.name, "?", f"column {column.name}: {error}")
