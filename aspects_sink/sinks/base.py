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
from aspects_sink.conf import SINK_SETTING_TEMPLATE, aspects_settings
from aspects_sink.models import LeasedEntry, OutboxEntry, RetiredUser, retired_user_ids
from aspects_sink.mutations import LOCAL_MUTATIONS
from aspects_sink.sinks import columns as col
from aspects_sink.sinks import schema
from aspects_sink.sinks.reading import read_columns
from aspects_sink.transport import ColumnBatch

log = logging.getLogger(__name__)

_DUMP_NAMESPACE = uuid.UUID("6f0b6c1e-3b1a-4b9e-9a53-7f0c1d0a5e11")

# Fields of the platform's models that are personal data, by model key (Aspects' view: names, usernames,
# emails, contact details and free text about the learner). A column reading one of them is personal
# whatever sink declares it, marked ``pii`` or not: blanked with ASPECTS_ENABLE_PII off, scrubbed on retirement.
PERSONAL_FIELDS: dict[str, frozenset[str]] = {
    "auth_user": frozenset({"username", "email", "first_name", "last_name"}),
    "user_profile": frozenset({"name", "meta", "location", "mailing_address", "city", "goals", "bio", "phone_number"}),
}
# How a model reaches those models through a relation (``user__email``, ``profile__city``, ``user__profile__bio``).
_RELATIONS = {"user": "auth_user", "profile": "user_profile"}


def is_personal_source(model: str, source: str) -> bool:
    """Whether the ORM path ``source`` of ``model`` reads a personal field."""
    *path, field_name = source.split("__")
    related = _RELATIONS.get(path[-1]) if path else model
    return field_name in PERSONAL_FIELDS.get(related or "", ())


# A sink that writes several tables fans each object out into many rows (a course into its blocks, often
# thousands), so it is sent this many objects at a time, live and in backfills, to keep memory bounded.
FAN_OUT_BATCH_SIZE = 10


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
    # ``database.table`` (unquoted) that the statement mutates: the drain follows the mutation to its end in
    # ``system.mutations`` there, and never acknowledges it before (aspects_sink.mutations).
    mutates: str | None = None
    # Where the mutation shows until done: ``system.mutations``, or every replica's on a cluster.
    mutations_log: str = LOCAL_MUTATIONS


@dataclass(frozen=True)
class TableSpec:
    """
    A ClickHouse table a sink writes, everything the schema command, the sinks and retirement need of it.

    ``database`` None means the sinks' database (``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["database"]``).
    Sinks' tables carry the bookkeeping columns and collapse on ``version`` (docs/decisions/0002); a table
    of rows that never change (the raw xAPI table) has neither, and the last insert of a key wins.
    ``user_id_column`` is what retirement matches a user on; ``personal`` names columns that hold personal
    data besides those whose column type says so (a site sink's column reading ``UserProfile.city``).
    """

    name: str
    columns: tuple[col.Column, ...]
    key: tuple[str, ...]
    user_id_column: str | None = None
    database: str | None = None
    partition_by: str | None = None
    version_column: str | None = "version"
    bookkeeping: tuple[col.Column, ...] = BOOKKEEPING_COLUMNS
    personal: frozenset[str] = frozenset()
    # Columns a table an existing Aspects install created may lack (docs/decisions/0002: how rows still order).
    optional_columns: tuple[str, ...] = ("version",)

    @property
    def all_columns(self) -> tuple[col.Column, ...]:
        return self.columns + self.bookkeeping

    @property
    def pii_columns(self) -> tuple[col.Column, ...]:
        return tuple(column for column in self.columns if column.pii or column.name in self.personal)

    @property
    def mutation_target(self) -> str:
        """The quoted table a mutation names: the storing table, in the table's own database if it has one."""
        return schema.qualified(schema.storage_table(self.name), self.database)

    @property
    def storage_name(self) -> str:
        """``database.table`` of the storing table, as ``system.mutations`` names it."""
        return f"{self.database or schema.database()}.{schema.storage_table(self.name)}"

    def delete_users(self, user_ids: Sequence[int], older_than: Stamp | None = None) -> Statement:
        """
        The one mutation that removes every row of these users (``ALTER TABLE … DELETE``, which Tutor's
        ``DELETE`` grant allows), ``ON CLUSTER`` in cluster mode; parameterized, followed to its end.

        ``older_than``: only the rows written before the read of that stamp, for a batch that found the users'
        objects missing. A later read (a backfill, once the object exists) wrote what is true now, and a
        mutation submitted after that row landed would remove it. ``time_last_dumped`` orders reads as
        ``version`` does and every bookkept table has it (docs/decisions/0002-row-versions.rst).
        """
        sql = (
            f"ALTER TABLE {self.mutation_target}{schema.on_cluster()} "
            f"DELETE WHERE {schema.quote(self.user_id_column or '')} IN {{user_ids:Array(Int64)}}"
        )
        parameters: dict[str, Any] = {"user_ids": sorted(user_ids)}
        if older_than is not None and self.bookkeeping:
            sql += " AND time_last_dumped < {read_at:String}"
            parameters["read_at"] = older_than.time_last_dumped
        return Statement(sql, parameters, schema.mutation_settings(), self.storage_name, schema.mutations_log())

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
            optional_columns=frozenset(self.optional_columns) if self.bookkeeping else frozenset(),
        )


@dataclass(frozen=True)
class QueueSpec:
    """
    Where a sink's pending work waits in the LMS database, and the settings that bound it.

    Platform objects share the ``OutboxEntry`` table, told apart by ``sink_field``, and an entry only names
    its object (``key_field``), read again when sent. Work that cannot be read again later carries its
    payload in a table of its own (``sink_field`` None), as xAPI statements do. ``max_dead_setting`` None
    keeps dead letters until replayed; otherwise the oldest beyond the bound are deleted, each logged by id
    and error class, never with its ``payload_field`` (it may hold personal data), so a flood of rejected
    entries cannot fill the database.
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
    # Whether a failed batch may be split to find the objects at fault. A sink whose writes are mutations
    # (retirement) is one unit: splitting it would make a storm of mutations.
    splittable: ClassVar[bool] = True
    order: ClassVar[int] = 100
    description: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def tables(self) -> tuple[TableSpec, ...]:
        """The tables this sink writes (created by the schema command)."""
        return ()

    @property
    def deletes_retired_rows(self) -> bool:
        """Whether a retired user's rows go altogether (``EVENT_SINK_CLICKHOUSE_PII_MODELS``, or personal rows)."""
        return self.pii or self.name in aspects_settings.EVENT_SINK_CLICKHOUSE_PII_MODELS

    def is_enabled(self) -> bool:
        if self.pii:
            # Its own switch set True is consent for this sink only; otherwise ASPECTS_ENABLE_PII must be on, and
            # then the switch or the waffle flag decide as for any sink. A waffle flag alone is no consent.
            if toggles.personal_sink_switch(self.name):
                return True
            if not aspects_settings.ASPECTS_ENABLE_PII:
                return False
        return toggles.sink_enabled(self.name)

    @property
    def switches(self) -> str:
        """What turns the sink on, for messages about a sink switched off."""
        setting = SINK_SETTING_TEMPLATE.format(self.name.upper())
        return f"{setting}, its waffle flag{', ASPECTS_ENABLE_PII' if self.pii else ''}"

    def get_model(self):
        return edx_platform.get_model(self.model)

    def changed_objects(self, model_name: str, instance: Any) -> list:
        """The objects of this sink a save or delete of ``instance`` (a ``model_name``) changes."""
        return [getattr(instance, self.lookup)]

    @property
    def drain_interval(self) -> float:
        return float(getattr(aspects_settings, self.drain_interval_setting))

    @property
    def gather_seconds(self) -> float:
        """
        How long the first change after a quiet period waits for the changes that follow it, so that a stream
        of changes starts with one INSERT rather than one per change: the flush interval.
        """
        return float(aspects_settings.ASPECTS_SINK_FLUSH_INTERVAL_SECONDS)

    @property
    def shows_user_fields(self) -> bool:
        """Whether rows carry fields of the User (username, email): a saved User must re-send them."""
        return False

    @property
    def objects_per_batch(self) -> int | None:
        """
        The most objects one batch may hold whatever the batch size settings say (None: no bound of its own).
        A sink writing several tables fans out (a course into thousands of blocks): memory bounds its batches.
        """
        return FAN_OUT_BATCH_SIZE if len(self.tables()) > 1 else None

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
    def personal_columns(self) -> frozenset[str]:
        """Columns holding personal data: marked ``pii``, or reading a personal field (``PERSONAL_FIELDS``)."""
        return frozenset(
            column.name
            for column in self.columns
            if column.pii or any(is_personal_source(self.model, source) for source in column.sources)
        )

    @cached_property
    def user_source(self) -> str | None:
        """The ORM source of ``user_id_column``: where a batch's users are read."""
        return next((column.sources[0] for column in self.columns if column.name == self.user_id_column), None)

    @property
    def deletes_retired_rows(self) -> bool:
        return bool(self.user_source) and super().deletes_retired_rows

    @cached_property
    def table_spec(self) -> TableSpec:
        return TableSpec(
            self.table, tuple(self.columns), tuple(self.key), self.user_id_column, personal=self.personal_columns
        )

    def tables(self) -> tuple[TableSpec, ...]:
        return (self.table_spec,)

    @cached_property
    def _sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(source for column in self.columns for source in column.sources))

    def queryset(self):
        """
        Every object of the sink, with the annotations its columns read.

        Sinks whose rows retirement deletes never send a retired user again: users recorded as retired
        (:class:`~aspects_sink.models.RetiredUser`, whatever their username) and accounts the platform
        renamed with ``RETIRED_USERNAME_PREFIX`` (retired before this plugin was installed) are left out.
        """
        queryset = self.get_model()._default_manager.all()
        if self.deletes_retired_rows:
            recorded = RetiredUser.objects.values("user_id")
            queryset = queryset.exclude(**{f"{self.user_source}__in": recorded})
            if self.user_source == "user_id":
                prefix = aspects_settings.RETIRED_USERNAME_PREFIX
                queryset = queryset.exclude(user__username__startswith=prefix)
        annotations = self.annotations()
        return queryset.annotate(**annotations) if annotations else queryset

    def queryset_for(self, object_ids: Iterable[Any]):
        return self.queryset().filter(**{f"{self.lookup}__in": list(object_ids)})

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch | Statement]:
        """
        The objects' rows; for a sink whose rows are personal and looked up by user, the rows of users the
        LMS no longer has (a deleted profile or user, a retired user) are deleted: no row outlives its object.
        """
        fetched = self.fetch(self.queryset_for(object_ids))
        writes: list[ColumnBatch | Statement] = [self.serialize_fetched(fetched, stamp)]
        if self.deletes_retired_rows and self.lookup == self.user_source:
            gone = {int(object_id) for object_id in object_ids} - {int(user) for user in fetched[self.user_source]}
            if gone:
                writes.append(self.table_spec.delete_users(sorted(gone), older_than=stamp))
        return writes

    def fetch(self, queryset, *, also: Sequence[str] = ()) -> dict[str, Sequence]:
        """
        Read the batch with one query, as one list per ORM source, and per source in ``also`` (the backfill
        reads the primary key along, to tell which objects of a page it sends).
        """
        sources = self._sources + tuple(source for source in also if source not in self._sources)
        return read_columns(queryset, sources)

    def serialize(self, queryset, stamp: Stamp) -> ColumnBatch:
        """One column batch for everything ``queryset`` selects."""
        return self.serialize_fetched(self.fetch(queryset), stamp)

    def serialize_fetched(self, fetched: dict[str, Sequence], stamp: Stamp) -> ColumnBatch:
        """
        One column batch from what :meth:`fetch` read. Personal columns are empty with ASPECTS_ENABLE_PII
        off, and empty in the rows of retired users always (one query per batch finds them).
        """
        blank_pii = not toggles.pii_enabled()
        personal = self.personal_columns
        retired_rows = None if blank_pii or not personal else self._retired_rows(fetched)
        data = []
        for column in self.columns:
            sources = column.sources
            values = fetched[sources[0]] if len(sources) == 1 else list(zip(*(fetched[s] for s in sources)))
            if column.name in personal and blank_pii:
                data.append([column.empty] * len(values))
                continue
            converted = self._convert(column, values, fetched)
            if column.name in personal and retired_rows:
                converted = [column.empty if retired else value for value, retired in zip(converted, retired_rows)]
            data.append(converted)
        return self.table_spec.batch(data, stamp)

    def _retired_rows(self, fetched: dict[str, Sequence]) -> list[bool] | None:
        """Per row, whether its user is recorded as retired; None when no row's is."""
        if not self.user_source or not fetched.get(self.user_source):
            return None
        users = fetched[self.user_source]
        retired = retired_user_ids(users)
        return [user is not None and int(user) in retired for user in users] if retired else None

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
