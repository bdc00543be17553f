"""DDL: single server runs for real; cluster and sharded forms are checked by ClickHouse's own parser."""

import pytest

from aspects_sink.management.commands.aspects_sink_schema import all_tables
from aspects_sink.sinks import schema


def parse_with_clickhouse(transport, sql: str) -> str:
    """ClickHouse's parser (formatQuery) either normalizes the statement or raises a syntax error."""
    return transport.rows("SELECT formatQuery({sql:String})", {"sql": sql})[0][0]


@pytest.mark.parametrize(
    ("cluster", "expect"),
    [
        (schema.ClusterConfig(), ["ReplacingMergeTree(version)"]),
        (schema.ClusterConfig("analytics"), ["ON CLUSTER analytics", "ReplicatedReplacingMergeTree(version)"]),
        (schema.ClusterConfig("analytics", shards=3), ["user_profile_local", "Distributed(analytics"]),
    ],
)
def test_every_statement_parses(embedded_clickhouse, cluster, expect):
    statements = schema.create_schema(all_tables(), db="event_sink", config=cluster)
    parsed = "\n".join(parse_with_clickhouse(embedded_clickhouse, statement) for statement in statements)
    for fragment in expect:
        assert fragment in parsed


def test_sharded_tables_shard_by_the_object_key():
    table = next(table for table in all_tables() if table.name == "course_enrollment")
    local, distributed = schema.create_table(table, "event_sink", schema.ClusterConfig("c", shards=2))
    assert "CREATE TABLE IF NOT EXISTS `event_sink`.`course_enrollment_local` ON CLUSTER `c`" in local
    assert "cityHash64(`course_key`, `user_id`)" in distributed


def test_identifiers_are_plain_names_only():
    with pytest.raises(ValueError):
        schema.quote("x`; DROP TABLE y")


@pytest.mark.django_db
def test_schema_command_is_idempotent_and_records_what_it_applied(embedded_clickhouse):
    from django.core.management import call_command

    call_command("aspects_sink_schema", verbosity=0)  # second run: nothing new, nothing broken
    recorded = embedded_clickhouse.rows("SELECT count(), uniqExact(statement_hash) FROM event_sink.aspects_sink_schema")
    assert recorded[0][0] == recorded[0][1] > 0
    tables = {
        row[0] for row in embedded_clickhouse.rows("SELECT name FROM system.tables WHERE database = 'event_sink'")
    }
    assert {"user_profile", "external_id", "course_enrollment", "course_overviews", "course_blocks"} <= tables
