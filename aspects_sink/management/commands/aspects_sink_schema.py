"""Create (or show) the ClickHouse database and tables aspects-sink writes, idempotently."""

from __future__ import annotations

import hashlib

from django.core.management.base import BaseCommand, CommandError

from aspects_sink.management.options import add_connection_arguments, transport_from_options
from aspects_sink.sinks import schema
from aspects_sink.sinks.registry import all_tables
from aspects_sink.transport import ColumnBatch, TransportError

SCHEMA_VERSION = 1


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_schema [--print]``."""

    help = (
        "Create the ClickHouse database and the tables of every sink if they do not exist, and record "
        "what was applied in <database>.aspects_sink_schema. Cluster mode follows ASPECTS_SINK_CLUSTER. "
        "Safe to run again at any time."
    )

    def add_arguments(self, parser):
        parser.add_argument("--print", action="store_true", help="print the DDL and exit; connect to nothing")
        add_connection_arguments(parser)

    def handle(self, *args, **options):
        database = options.get("database") or schema.database()
        try:
            statements = schema.create_schema(all_tables(), db=database)
        except ValueError as error:  # a name the schema cannot quote: only plain identifiers are taken
            raise CommandError(str(error)) from error
        if options["print"]:
            self.stdout.write(";\n\n".join(statements) + ";")
            return
        # Connect without a default database: it may not exist yet.
        transport = transport_from_options(options, database="default")
        applied = 0
        try:
            for statement in statements:
                transport.command(statement)
            applied = self._record(transport, database, statements)
        except TransportError as error:
            raise CommandError(str(error)) from error
        if options["verbosity"]:
            self.stdout.write(f"ClickHouse schema ready in {database}: {len(statements)} statements, {applied} new.")

    def _record(self, transport, database: str, statements: list[str]) -> int:
        log_table = schema.qualified(schema.SCHEMA_LOG_TABLE, database)
        known = {row[0] for row in transport.rows(f"SELECT statement_hash FROM {log_table}")}
        new = [(hashlib.sha256(s.encode()).hexdigest(), s) for s in statements]
        new = [(digest, statement) for digest, statement in new if digest not in known]
        transport.insert(
            ColumnBatch(
                table=f"{database}.{schema.SCHEMA_LOG_TABLE}",
                column_names=("version", "statement_hash", "statement"),
                column_types=("UInt32", "String", "String"),
                columns=([SCHEMA_VERSION] * len(new), [digest for digest, _ in new], [sql for _, sql in new]),
            )
        )
        return len(new)
