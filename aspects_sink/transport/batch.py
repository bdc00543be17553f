"""The unit of work between a sink and the transport: one table, many rows, stored column by column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ColumnBatch:
    """
    Rows for one table, column-oriented, ready for a single INSERT.

    Column-oriented because that is how ClickHouse's Native format is laid out: the transport
    hands the lists to clickhouse-connect without building a tuple per row.
    """

    table: str
    column_names: tuple[str, ...]
    column_types: tuple[str, ...]
    columns: tuple[Sequence, ...]
    # Columns a table may lack, left out of the INSERT then; any other missing column is a configuration error.
    optional_columns: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        if not len(self.column_names) == len(self.column_types) == len(self.columns):
            raise ValueError(f"{self.table}: column names, types and data differ in length")
        lengths = {len(column) for column in self.columns}
        if len(lengths) > 1:
            raise ValueError(f"{self.table}: columns have different row counts {sorted(lengths)}")

    @property
    def row_count(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def __len__(self) -> int:
        return self.row_count

    def only_columns(self, names: set[str], types: dict[str, str] | None = None) -> ColumnBatch:
        """
        Keep the columns whose names are in ``names``, optionally retyped.

        Lets the plugin write into a table another tool created: an optional column the table lacks is
        left out, and a column the table types differently is sent with the table's type.
        """
        types = types or {}
        kept = [i for i, name in enumerate(self.column_names) if name in names]
        return ColumnBatch(
            table=self.table,
            column_names=tuple(self.column_names[i] for i in kept),
            column_types=tuple(types.get(self.column_names[i], self.column_types[i]) for i in kept),
            columns=tuple(self.columns[i] for i in kept),
            optional_columns=self.optional_columns,
        )
