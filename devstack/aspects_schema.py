"""
The ``event_sink`` tables as Aspects' own ClickHouse migrations create them (tutor-contrib-aspects), for a site
that runs Aspects before aspects-sink: columns in Aspects' order (platform-plugin-aspects writes CSV by position),
its engines and sorting keys, no ``version`` column. The tables of a Tutor site are these, not those of
``aspects_sink_schema``; the benchmarks and the switch-over tests write into them.
"""

from __future__ import annotations

_TAG_ENGINE = "ReplacingMergeTree ORDER BY (id, time_last_dumped)"
_DUMPED = "dump_id UUID, time_last_dumped String"

# table → (columns, engine)
ASPECTS_TABLES = {
    "course_overviews": (
        "org String, course_key String, display_name String, course_start String, course_end String, "
        "enrollment_start String, enrollment_end String, self_paced Bool, course_data_json String, "
        f"created String, modified String, {_DUMPED}",
        "MergeTree ORDER BY (org, course_key, modified, time_last_dumped)",
    ),
    "course_blocks": (
        "org String, course_key String, location String, display_name String, xblock_data_json String, "
        f"`order` Int32 DEFAULT 0, edited_on String, {_DUMPED}",
        "MergeTree ORDER BY (org, course_key, location, edited_on, `order`)",
    ),
    "user_profile": (
        "id Int32, user_id Int32, name String, username String DEFAULT '', email String DEFAULT '', "
        "meta String, courseware String, language String, location String, year_of_birth String, "
        "gender String, level_of_education String, mailing_address String, city String, country String, "
        f"state String, goals String, bio String, profile_image_uploaded_at String, phone_number String, {_DUMPED}",
        "ReplacingMergeTree PARTITION BY user_id % 100 ORDER BY (id, time_last_dumped)",
    ),
    "external_id": (
        f"external_user_id UUID, external_id_type String, username String, user_id Int32, {_DUMPED}",
        "ReplacingMergeTree PARTITION BY user_id % 100 ORDER BY (external_user_id, time_last_dumped)",
    ),
    "course_enrollment": (
        "id Int32, course_key String, created String, is_active Bool, mode LowCardinality(String), "
        f"username String, user_id Int32, {_DUMPED}",
        "MergeTree ORDER BY (course_key, user_id, time_last_dumped)",
    ),
    "taxonomy": (f"id Int32, name String, {_DUMPED}", _TAG_ENGINE),
    "tag": (
        f"id Int32, taxonomy Int32, parent Int32, value String, external_id String, lineage String, {_DUMPED}",
        _TAG_ENGINE,
    ),
    "object_tag": (
        "id Int32, object_id String, taxonomy Int32, tag Int32, _value String, _export_id String, "
        f"lineage String, {_DUMPED}",
        _TAG_ENGINE,
    ),
}


def create_aspects_tables(client, database: str, tables: tuple[str, ...] | None = None) -> None:
    """Create ``database`` and Aspects' tables in it (all, or ``tables``), if they do not exist yet."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for table in tables or tuple(ASPECTS_TABLES):
        columns, engine = ASPECTS_TABLES[table]
        client.command(f"CREATE TABLE IF NOT EXISTS {database}.{table} ({columns}) ENGINE = {engine}")
