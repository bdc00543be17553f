"""
What a sink is: a small declarative description of one kind of object and the ClickHouse rows it
becomes. A sink reads the platform (through ``aspects_sink.edx_platform``) and returns column batches
or statements; it never talks to ClickHouse itself. Delivery and backfill hand its output to the
transport.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from aspects_sink import edx_platform, toggles
from aspects_sink.conf import aspects_settings
from aspects_sink.models import LeasedEntry, OutboxEntry
from aspects_sink.sinks import columns as col
from aspects_sink.transport import ColumnBatch

log = logging.getLogger(__name__)

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

    ``dumped_at`` is the LMS database's time taken with that number (a :class:`~aspects_sink.models.Tick`
    carries it), so ``time_last_dumped`` orders an object's rows as ``version`` does on tables Aspects
    created, whose readers pick ``max(time_last_dumped)``. Without a tick (tests), it is this host's time.
    """

    version: int
    dumped_at: datetime.datetime | None = None

    def __post_init__(self):
        dumped_at = self.dumped_at or getattr(self.version, "at", None) or datetime.datetime.now(datetime.UTC)
        object.__setattr__(self, "version", int(self.version))
        object.__setattr__(self, "dumped_at", dumped_at)

    @property
    def time_last_dumped(self) -> str:
        """As platform-plugin-aspects writes it (``str()`` of a UTC datetime), so string maxima compare alike."""
        return str(self.dumped_at.astimezone(datetime.UTC))

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
    """
    A ClickHouse table a sink writes, everything the schema command, the sinks and retirement need of it.

    ``database`` None means the sinks' database (``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["database"]``).
    Sinks' tables carry the bookkeeping columns and collapse on ``version`` (docs/decisions/0002); a table
    of rows that never change (the raw xAPI table) has neither, and the last insert of a key wins.
    ``user_id_column`` is what retirement matches a user on.
    """

    name: str
    columns: tuple[col.Column, ...]
    key: tuple[str, ...]
    user_id_column: str | None = None
    database: str | None = None
    partition_by: str | None = None
    version_column: str | None = "version"
    bookkeeping: tuple[col.Column, ...] = BOOKKEEPING_COLUMNS

    @property
    def all_columns(self) -> tuple[col.Column, ...]:
        return self.columns + self.bookkeeping

    @property
    def pii_columns(self) -> tuple[col.Column, ...]:
        return tuple(column for column in self.columns if column.pii)

    @property
    def insert_target(self) -> str:
        """What an INSERT names: ``database.table`` for a table outside the sinks' database, else the table."""
        return f"{self.database}.{self.name}" if self.database else self.name

    def batch(self, data: Sequence[Sequence], stamp: Stamp | None = None) -> ColumnBatch:
        """The sink's own column data, with the bookkeeping columns of ``stamp`` attached when the table has them."""
        if self.bookkeeping:
            rows = len(data[0]) if data else 0
            data = (
                *data,
                [stamp.dump_id(self.name)] * rows,
                [stamp.time_last_dumped] * rows,
                [stamp.version] * rows,
            )
        all_columns = self.all_columns
        return ColumnBatch(
            table=self.insert_target,
            column_names=tuple(column.name for column in all_columns),
            column_types=tuple(column.clickhouse_type for column in all_columns),
            columns=tuple(data),
        )


@dataclass(frozen=True)
class QueueSpec:
    """
    Where a sink's pending work waits in the LMS database, and the settings that bound it.

    Platform objects share the ``OutboxEntry`` table, told apart by ``sink_field``, and an entry only names
    its object (``key_field``), read again when sent. Work that cannot be read again later carries its
    payload in a table of its own (``sink_field`` None), as xAPI statements do. ``max_dead_setting`` None
    keeps dead letters until replayed; otherwise the oldest beyond the bound are deleted, each logged with
    its ``payload_field``, so a flood of rejected entries cannot fill the database.
    """

    model: type[LeasedEntry] = OutboxEntry
    sink_field: str | None = "sink"
    key_field: str = "object_id"
    batch_size_setting: str = "ASPECTS_SINK_BATCH_SIZE"
    max_attempts_setting: str = "ASPECTS_SINK_MAX_ATTEMPTS"
    max_dead_setting: str | None = None
    payload_field: str | None = None

    @property
    def shared(self) -> bool:
        """Whether the queue's entries sit in the ``OutboxEntry`` table beside other sinks'."""
        return self.sink_field is not None


class Sink:
    """
    Base for every sink. Subclasses set the class attributes; most need nothing else.

    ``name`` is what the CLI (``--object``, a name kept from platform-plugin-aspects), the outbox and the
    settings call the sink; ``model`` is the key of the model it reads in
    ``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG``; ``lookup`` the field the live path's object ids refer to;
    ``saved_models`` the models (same keys) whose ``post_save`` re-sends the objects :meth:`changed_objects`
    names (the saved instance's ``lookup`` value), ``deleted_models`` those whose ``post_delete`` does;
    ``queue`` where its pending work waits; ``pii`` says that whole rows are personal data;
    ``order`` sorts a full backfill. Its tables come from :meth:`tables`: a sink declares what it sends
    where in one place, and the schema command, retirement and the drains read it there.
    """

    name: ClassVar[str]
    model: ClassVar[str]
    lookup: ClassVar[str] = "pk"
    saved_models: ClassVar[tuple[str, ...]] = ()
    deleted_models: ClassVar[tuple[str, ...]] = ()
    queue: ClassVar[QueueSpec] = QueueSpec()
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
        return edx_platform.get_model(self.model)

    def changed_objects(self, model_name: str, instance: Any) -> list:
        """The objects of this sink a save or delete of ``instance`` (a ``model_name``) changes."""
        return [getattr(instance, self.lookup)]

    @property
    def drain_interval(self) -> float:
        return float(getattr(aspects_settings, self.drain_interval_setting))

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

    def is_enabled(self) -> bool:
        """Switched on, and its model exists on this platform (content tags came with Redwood)."""
        if not super().is_enabled():
            return False
        try:
            self.get_model()
        except edx_platform.PlatformModelMissing as error:
            log.warning("aspects_sink: %s is switched on but cannot run here: %s", self.name, error)
            return False
        return True

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
        if self.user_id_column and self.name in aspects_settings.EVENT_SINK_CLICKHOUSE_PII_MODELS:
            prefix = aspects_settings.RETIRED_USERNAME_PREFIX
            queryset = queryset.exclude(user__username__startswith=prefix)
        annotations = self.annotations()
        return queryset.annotate(**annotations) if annotations else queryset

    def queryset_for(self, object_ids: Iterable[Any]):
        return self.queryset().filter(**{f"{self.lookup}__in": list(object_ids)})

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch | Statement]:
        return [self.serialize(self.queryset_for(object_ids), stamp)]

    def fetch(self, queryset, *, also: Sequence[str] = ()) -> dict[str, list]:
        """
        Read the batch with one query, as one list per ORM source, and per source in ``also`` (the backfill
        reads the primary key along, to tell which objects of a page it sends).
        """
        sources = self._sources + tuple(source for source in also if source not in self._sources)
        rows = list(queryset.values_list(*sources))
        values = list(zip(*rows)) if rows else [() for _ in sources]
        return dict(zip(sources, values))

    def serialize(self, queryset, stamp: Stamp) -> ColumnBatch:
        """One column batch for everything ``queryset`` selects."""
        return self.serialize_fetched(self.fetch(queryset), stamp)

    def serialize_fetched(
        self, fetched: dict[str, Sequence], stamp: Stamp, *, blank_pii: bool | None = None
    ) -> ColumnBatch:
        """The batch of what ``fetch`` read; personal columns blank when PII is off, or when ``blank_pii`` says so."""
        blank_pii = not toggles.pii_enabled() if blank_pii is None else blank_pii
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
