"""
``event_sink.course_overviews`` and ``event_sink.course_blocks``: a published course and the blocks
of its published tree, sent together whenever the course is published.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

from aspects_sink import edx_platform
from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import ModelSink, Stamp, TableSpec
from aspects_sink.transport import ColumnBatch

COURSE_DATA_KEYS = (
    "advertised_start",
    "announcement",
    "lowest_passing_grade",
    "invitation_only",
    "max_student_enrollments_allowed",
    "effort",
    "enable_proctored_exams",
    "entrance_exam_enabled",
    "external_id",
    "language",
)

# Block types whose position in the tree opens a new section, subsection or unit, outermost first.
SECTION_LEVELS = ("chapter", "sequential", "vertical")

COURSE_BLOCKS = TableSpec(
    name="course_blocks",
    columns=(
        col.String("org"),
        col.String("course_key"),
        col.String("location"),
        col.String("display_name"),
        col.String("xblock_data_json"),
        col.Int32("order"),
        col.String("edited_on"),
    ),
    key=("org", "course_key", "location"),
)


class CourseOverviewSink(ModelSink):
    """
    One row per course in ``course_overviews`` and one per published block in ``course_blocks``.

    Blocks are numbered in a depth-first walk of the published tree (1-based ``order``), with
    section/subsection/unit counters reset at each parent, and detached blocks (about pages,
    static tabs) appended last with 0/0/0 — the layout Aspects' dbt models expect.
    """

    name = "course_overviews"
    model = "course_overviews"
    table = "course_overviews"
    lookup = "id"
    order = 10
    drain_interval_setting = "ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS"  # publishing storms: one dump
    description = "Published courses and their blocks (course_overviews + course_blocks)"
    key = ("org", "course_key")
    columns = (
        col.String("org"),
        col.String("course_key", "id"),
        col.String("display_name"),
        col.DateTimeString("course_start", "start"),
        col.DateTimeString("course_end", "end"),
        col.DateTimeString("enrollment_start"),
        col.DateTimeString("enrollment_end"),
        col.Bool("self_paced"),
        col.JSONObject("course_data_json", COURSE_DATA_KEYS, constants={"tags": {}}),
        col.DateTimeString("created"),
        col.DateTimeString("modified"),
    )

    def tables(self) -> tuple[TableSpec, ...]:
        return (self.table_spec, COURSE_BLOCKS)

    def writes_for(self, object_ids: Sequence[Any], stamp: Stamp) -> list[ColumnBatch]:
        return self.serialize_with_blocks(self.queryset_for(object_ids), stamp)

    def serialize_with_blocks(self, queryset, stamp: Stamp) -> list[ColumnBatch]:
        """
        The block rows of the selected courses' published trees, then their overview rows. Blocks first on
        every path: an overview in ClickHouse says the course is current (a backfill without ``--force``
        skips it), so it is written only after the blocks it describes were taken.
        """
        overviews = self.serialize(queryset, stamp)
        course_keys = overviews.columns[overviews.column_names.index("course_key")]
        return [self.serialize_blocks(course_keys, stamp), overviews]

    def serialize_blocks(self, course_keys: Sequence[str], stamp: Stamp) -> ColumnBatch:
        store = edx_platform.modulestore()
        revision = edx_platform.published_only_revision()
        detached = edx_platform.detached_block_types()
        rows = []
        for course_key in course_keys:
            course_key_object = edx_platform.course_key(course_key)
            root = store.get_course(course_key_object, revision=revision)
            if root is None:
                continue
            detached_blocks = [
                block
                for block in store.get_items(course_key_object, revision=revision)
                if block.scope_ids.block_type in detached
            ]
            rows.extend(_block_rows(root, detached_blocks))
        data = [list(values) for values in zip(*rows)] if rows else [[] for _ in COURSE_BLOCKS.columns]
        return COURSE_BLOCKS.batch(
            [column.convert_all(values) for column, values in zip(COURSE_BLOCKS.columns, data)], stamp
        )


def _walk(block, counters: list[int]) -> Iterator[tuple[Any, tuple[int, int, int]]]:
    """Depth-first, parents before children, carrying the section/subsection/unit counters."""
    block_type = block.scope_ids.block_type
    if block_type in SECTION_LEVELS:
        level = SECTION_LEVELS.index(block_type)
        counters[level] += 1
        for deeper in range(level + 1, len(SECTION_LEVELS)):
            counters[deeper] = 0
    yield block, (counters[0], counters[1], counters[2])
    for child in block.get_children():
        yield from _walk(child, counters)


def _block_rows(root, detached_blocks) -> Iterator[tuple]:
    in_tree = ((block, position, False) for block, position in _walk(root, [0, 0, 0]))
    outside = ((block, (0, 0, 0), True) for block in detached_blocks)
    for order, (block, (section, subsection, unit), is_detached) in enumerate(chain(in_tree, outside), start=1):
        location = block.location.for_branch(None)
        course_key = location.course_key
        data = {
            "course": course_key.course,
            "run": course_key.run,
            "block_type": block.scope_ids.block_type,
            "detached": is_detached,
            "graded": bool(getattr(block, "graded", False)),
            "completion_mode": str(getattr(block, "completion_mode", "") or ""),
            "section": section,
            "subsection": subsection,
            "unit": unit,
            "tags": {},
        }
        yield (
            course_key.org,
            str(course_key),
            str(location),
            block.display_name_with_default,
            json.dumps(data, sort_keys=True),
            order,
            str(getattr(block, "edited_on", "") or ""),
        )
