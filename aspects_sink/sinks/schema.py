"""
ClickHouse DDL for the sinks' tables, single node or cluster.

Tables are ReplacingMergeTree on the object's key with ``version`` as the version column, so a
re-sent unchanged object collapses and the newest state wins (docs/decisions/0002-row-versions.rst).
With ``ASPECTS_SINK_CLUSTER["name"]`` set, DDL runs ``ON CLUSTER`` with Replicated engines; with
more than one shard, rows go to ``<table>_local`` tables behind a Distributed table of the plain name,
sharded by the key so every version of an object meets on one shard (docs/decisions/0003-cluster-ddl.rst).

Identifiers come from sink classes, never from users, and are quoted; values in statements that
touch data are always server-side parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from aspects_sink import toggles
from aspects_sink.conf import aspects_settings
from aspects_sink.mutations import LOCAL_MUTATIONS


class ColumnDefinition(Protocol):
    """What DDL needs of a column: :class:`aspects_sink.sinks.columns.Column`."""

    name: str
    clickhouse_type: str


class TableDefinition(Protocol):
    """What DDL needs of a table: :class:`aspects_sink.sinks.base.TableSpec`, which uses this module's quoting."""

    name: str
    key: tuple[str, ...]
    database: str | None
    partition_by: str | None
    version_column: str | None

    @property
    def all_columns(self) -> tuple[ColumnDefinition, ...]: ...


SCHEMA_LOG_TABLE = "aspects_sink_schema"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ClusterConfig:
    """``ASPECTS_SINK_CLUSTER``: the cluster's name (None for a single server) and its shard count."""

    name: str | None = None
    shards: int = 1

    @property
    def sharded(self) -> bool:
        return bool(self.name) and self.shards > 1


def cluster() -> ClusterConfig:
    """The configured cluster (``ASPECTS_SINK_CLUSTER``)."""
    config = aspects_settings.ASPECTS_SINK_CLUSTER
    return ClusterConfig(name=config.get("name") or None, shards=int(config.get("shards") or 1))


def database() -> str:
    """The database the sinks' tables live in (``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["database"]``)."""
    return aspects_settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["database"] or "event_sink"


def quote(identifier: str) -> str:
    """Quote an identifier; reject anything that is not a plain name, since none of ours needs more."""
    if not _IDENTIFIER.match(identifier):
        raise ValueError(f"not a plain ClickHouse identifier: {identifier!r}")
    return f"`{identifier}`"


def qualified(table: str, db: str | None = None) -> str:
    """``database.table``, quoted."""
    return f"{quote(db or database())}.{quote(table)}"


def on_cluster(config: ClusterConfig | None = None) -> str:
    """The ``ON CLUSTER`` clause DDL and mutations need in cluster mode, else nothing."""
    config = config or cluster()
    return f" ON CLUSTER {quote(config.name)}" if config.name else ""


def storage_table(table: str, config: ClusterConfig | None = None) -> str:
    """The name of the table that stores rows: ``<table>_local`` behind a Distributed table when sharded."""
    config = config or cluster()
    return f"{table}_local" if config.sharded else table


def mutation_target(table: str) -> str:
    """Mutations (ALTER ... DELETE/UPDATE) must run on the storing tables, not on a Distributed one."""
    return qualified(storage_table(table))


def mutations_log(config: ClusterConfig | None = None) -> str:
    """Where mutations show until done: ``system.mutations``, on a cluster every replica's."""
    config = config or cluster()
    return f"clusterAllReplicas({quote(config.name)}, {LOCAL_MUTATIONS})" if config.name else LOCAL_MUTATIONS


def mutation_settings() -> dict:
    """``mutations_sync`` when ``ASPECTS_SINK_RETIREMENT_WAIT`` asks to wait (2: on every replica)."""
    if toggles.retirement_waits():
        return {"mutations_sync": 2 if cluster().name else 1}
    return {}


def _engine(config: ClusterConfig, version_column: str | None) -> str:
    engine = "ReplicatedReplacingMergeTree" if config.name else "ReplacingMergeTree"
    return f"{engine}({version_column or ''})"


def create_table(table: TableDefinition, db: str | None = None, config: ClusterConfig | None = None) -> list[str]:
    """
    CREATE TABLE statements for one table (two when sharded: local storage + Distributed), in the table's
    own database if it names one (the raw xAPI table), else in ``db``.
    """
    config = config or cluster()
    db = table.database or db or database()
    columns = ",\n    ".join(f"{quote(column.name)} {column.clickhouse_type}" for column in table.all_columns)
    key = ", ".join(quote(name) for name in table.key)
    storage = storage_table(table.name, config)
    partition_by = table.partition_by
    statements = [
        f"CREATE TABLE IF NOT EXISTS {qualified(storage, db)}{on_cluster(config)} (\n    {columns}\n)\n"
        f"ENGINE = {_engine(config, table.version_column)}\n"
        + (f"PARTITION BY {partition_by}\n" if partition_by else "")
        + f"ORDER BY ({key})"
    ]
    if config.sharded:
        sharding_key = f"cityHash64({key})"
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {qualified(table.name, db)}{on_cluster(config)} AS {qualified(storage, db)}\n"
            f"ENGINE = Distributed({quote(config.name)}, {quote(db)}, {quote(storage)}, {sharding_key})"
        )
    return statements


def create_schema(
    tables: Iterable[TableDefinition], db: str | None = None, config: ClusterConfig | None = None
) -> list[str]:
    """Every statement that creates the database, the schema log and the given tables, idempotently."""
    config = config or cluster()
    db = db or database()
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {quote(db)}{on_cluster(config)}",
        f"CREATE TABLE IF NOT EXISTS {qualified(SCHEMA_LOG_TABLE, db)}{on_cluster(config)} (\n"
        "    `version` UInt32,\n    `statement_hash` String,\n    `statement` String,\n"
        "    `applied_at` DateTime64(6, 'UTC') DEFAULT now64(6)\n)\n"
        f"ENGINE = {'ReplicatedMergeTree' if config.name else 'MergeTree'}\nORDER BY (version, statement_hash)",
    ]
    for table in tables:
        if table.database and table.database != db:
            statements.append(f"CREATE DATABASE IF NOT EXISTS {quote(table.database)}{on_cluster(config)}")
        statements.extend(create_table(table, db, config))
    return statements
