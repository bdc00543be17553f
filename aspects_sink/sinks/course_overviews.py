"""
``event_sink.course_overviews`` and ``event_sink.course_blocks``: a published course and the blocks
of its published tree, sent together whenever the course is published.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from itertools import chain
from typing import Any, NamedTuple

from django.db.models import QuerySet

from aspects_sink import edx_platform
from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import ModelSink, Stamp, TableSpec
from aspects_sink.sinks.object_tag import object_tags_of_taxonomy, object_tags_showing
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
    "tags",
)
_CHUNK = 900  # object ids per query: under SQLite's bound on parameters per statement

# Block types whose position in the tree opens a new section, subsection or unit, outermost first.
SECTION_LEVELS = ("chapter", "sequential", "vertical")
_LEVELS = {block_type: level for level, block_type in enumerate(SECTION_LEVELS)}

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
    static tabs) appended last with 0/0/0 — the layout Aspects' dbt models expect. ``tags`` in both JSON
    columns are the ids of the tags applied to the course or block and of their ancestors, as Aspects' course
    and block tag filters read them; a course is re-sent when one of its own or its blocks' object tags is
    saved or deleted. Every value is written as platform-plugin-aspects writes it, so the rows of the two
    plugins compare alike on the day a site switches.
    """

    name = "course_overviews"
    model = "course_overviews"
    table = "course_overviews"
    lookup = "id"
    saved_models = ("object_tag", "tag", "taxonomy")
    deleted_models = ("object_tag", "tag", "taxonomy")
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
        col.IsoDateTimeString("enrollment_start"),
        col.IsoDateTimeString("enrollment_end"),
        col.Bool("self_paced"),
        col.JSONObject("course_data_json", COURSE_DATA_KEYS),
        col.IsoDateTimeString("created"),
        col.IsoDateTimeString("modified"),
    )

    @property
    def gather_seconds(self) -> float:
        """
        None: a publish is one change, dumped at once after a quiet interval; the publishes of a storm that follow
        it wait for the end of the dump interval and are dumped together.
        """
        return 0.0

    def tables(self) -> tuple[TableSpec, ...]:
        return (self.table_spec, COURSE_BLOCKS)

    def changed_objects(self, model_name: str, instance: Any) -> list:
        """
        An object tag saved or deleted changes the course it tags, or the course of the block it tags; a tag
        deleted, the courses it was on (their ``tags`` list its id). A renamed tag changes no course: ids stay.
        """
        if model_name == "object_tag":
            course = edx_platform.course_of(instance.object_id)
            return [course] if course else []
        if model_name == "tag":
            if type(instance)._default_manager.filter(pk=instance.pk).exists():
                return []
            return _courses_of(object_tags_showing(instance))
        if model_name == "taxonomy":  # enabled or not, deleted: its tags show on its courses or no more
            return _courses_of(object_tags_of_taxonomy(instance))
        return super().changed_objects(model_name, instance)

    @cached_property
    def _sources(self) -> tuple[str, ...]:
        return tuple(source for source in super()._sources if source != "tags")

    def fetch(self, queryset, *, also: Sequence[str] = ()) -> dict[str, list]:
        """The overviews' fields, and the tags of each course (not a model field: read from the object tags)."""
        fetched = super().fetch(queryset, also=also)
        course_keys = [str(key) for key in fetched["id"]]
        tags = tags_of(course_keys)
        fetched["tags"] = [tags.get(key, []) for key in course_keys]
        return fetched

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
        """
        The ``course_blocks`` rows of these courses: each course read from the modulestore once (its course
        block found among its blocks), each block's location made text once (the row's key, and what its tags are
        found by), the rows then converted column by column.
        """
        detached = edx_platform.detached_block_types()
        courses: list[tuple[list[NumberedBlock], list[str]]] = []
        for course_key in course_keys:
            blocks = edx_platform.published_blocks(edx_platform.course_key(course_key)) or []
            typed = [(block, block.scope_ids.block_type) for block in blocks]
            root = next((block for block, block_type in typed if block_type == "course"), None)
            if root is None:
                continue
            numbered = list(_numbered(root, [(block, kind) for block, kind in typed if kind in detached]))
            courses.append((numbered, [_location_text(block.location) for block, *_ in numbered]))
        tags = block_tags([locations for _, locations in courses])
        course_texts: dict[Any, str] = {}
        rows = [
            _block_row(block, location, course_texts, tags)
            for numbered, locations in courses
            for block, location in zip(numbered, locations)
        ]
        data = [list(values) for values in zip(*rows)] if rows else [[] for _ in COURSE_BLOCKS.columns]
        return COURSE_BLOCKS.batch(
            [column.convert_all(values) for column, values in zip(COURSE_BLOCKS.columns, data)], stamp
        )


def _courses_of(object_tags: QuerySet) -> list[str]:
    """The courses these object tags are on, directly or through one of their blocks."""
    object_ids = object_tags.values_list("object_id", flat=True)
    return sorted({course for course in map(edx_platform.course_of, object_ids) if course})


def tags_of(object_ids: Iterable[str]) -> dict[str, list[int]]:
    """
    The tags of each object, as platform-plugin-aspects lists them: the ids of the tags applied to it and of
    their ancestors, sorted, from object tags whose taxonomy exists and is enabled and whose tag exists (what
    the platform's ``get_object_tags`` returns). One query per 900 objects; none on a platform without tags.
    """
    object_ids = list(object_ids)
    tags: dict[str, set[int]] = {}
    for start in range(0, len(object_ids), _CHUNK):
        _read_tags(tags, object_id__in=object_ids[start : start + _CHUNK])
    return {object_id: sorted(ids) for object_id, ids in tags.items()}


def block_tags(courses: Sequence[Sequence[str]]) -> dict[str, list[int]]:
    """
    The tags of a batch's blocks (as :func:`tags_of` lists them), given each course's block locations: the
    small courses' blocks together (one query per 900 blocks), a big course's in one query of its own, by the
    prefix of its usage keys, as edx-platform's content tagging reads the tags of a course's blocks.
    """
    small = [location for locations in courses if len(locations) <= _CHUNK for location in locations]
    tags = tags_of(small) if small else {}
    for locations in (locations for locations in courses if len(locations) > _CHUNK):
        prefix = _common_prefix(locations)
        if not prefix:
            tags.update(tags_of(locations))
            continue
        wanted, found = set(locations), {}
        _read_tags(found, object_id__startswith=prefix)
        tags.update({object_id: sorted(ids) for object_id, ids in found.items() if object_id in wanted})
    return tags


def _common_prefix(texts: Sequence[str]) -> str:
    """The longest text every one of ``texts`` starts with (that of the first and last in sort order)."""
    if not texts:
        return ""
    first, last = min(texts), max(texts)
    return first[: next((at for at, (a, b) in enumerate(zip(first, last)) if a != b), len(first))]


def _read_tags(tags: dict[str, set[int]], **selection: Any) -> None:
    """Add the tag ids (and their ancestors') of the object tags ``selection`` selects to ``tags``, by object."""
    try:
        object_tag = edx_platform.get_model("object_tag")
    except edx_platform.PlatformModelMissing:
        return
    ancestry = ("tag_id", "tag__parent_id", "tag__parent__parent_id", "tag__parent__parent__parent_id")
    rows = (
        object_tag.objects.filter(**selection)
        .exclude(taxonomy=None)
        .exclude(taxonomy__enabled=False)
        .exclude(tag=None)
        .values_list("object_id", *ancestry)
    )
    for object_id, *tag_ids in rows:
        tags.setdefault(object_id, set()).update(tag_id for tag_id in tag_ids if tag_id is not None)


def _walk(root) -> Iterator[tuple[Any, str, tuple[int, int, int]]]:
    """
    Depth-first, parents before children, each block with its type and the section/subsection/unit counters;
    iterative, since a course may nest deeper than Python's stack.
    """
    counters = [0, 0, 0]
    waiting = [root]
    while waiting:
        block = waiting.pop()
        block_type = block.scope_ids.block_type
        level = _LEVELS.get(block_type)
        if level is not None:
            counters[level] += 1
            counters[level + 1 :] = [0] * (len(SECTION_LEVELS) - level - 1)
        yield block, block_type, (counters[0], counters[1], counters[2])
        waiting.extend(reversed(block.get_children()))


class NumberedBlock(NamedTuple):
    """A block with its type, its 1-based order, its section/subsection/unit and whether it is detached."""

    block: Any
    block_type: str
    order: int
    position: tuple[int, int, int]
    detached: bool


def _numbered(root, detached_blocks) -> Iterator[NumberedBlock]:
    """Every block of the tree under ``root`` in order, then the ``detached_blocks`` ((block, type) pairs)."""
    in_tree = ((block, block_type, position, False) for block, block_type, position in _walk(root))
    outside = ((block, block_type, (0, 0, 0), True) for block, block_type in detached_blocks)
    for order, (block, block_type, position, is_detached) in enumerate(chain(in_tree, outside), start=1):
        yield NumberedBlock(block, block_type, order, position, is_detached)


def _location_text(location) -> str:
    """A block's location as platform-plugin-aspects writes it: without a branch (made anew only if it has one)."""
    return str(location.for_branch(None) if getattr(location, "branch", None) else location)


def _seconds(value: Any) -> float:
    """A video's start or end time (a timedelta) in seconds, 0.0 when unset."""
    return value.total_seconds() if value else 0.0


def _block_row(numbered: NumberedBlock, location: str, course_texts: dict[Any, str], tags: dict) -> tuple:
    """
    One ``course_blocks`` row. ``xblock_data_json`` is written as platform-plugin-aspects writes it: its members
    in that order, ``detached`` and ``graded`` as 1/0, a video's start and end times in seconds. The course key's
    text is made once per course (``course_texts``).
    """
    block, block_type = numbered.block, numbered.block_type
    course_key = block.location.course_key
    course_text = course_texts.get(course_key)
    if course_text is None:
        course_text = course_texts[course_key] = str(course_key)
    data = {
        "course": course_key.course,
        "run": course_key.run,
        "block_type": block_type,
        "detached": int(numbered.detached),
        "graded": int(bool(getattr(block, "graded", False))),
        "completion_mode": getattr(block, "completion_mode", ""),
    }
    if block_type == "video":
        data["video_start_time"] = _seconds(getattr(block, "start_time", None))
        data["video_end_time"] = _seconds(getattr(block, "end_time", None))
    section, subsection, unit = numbered.position
    data.update(section=section, subsection=subsection, unit=unit, tags=tags.get(location, []))
    return (
        course_key.org,
        course_text,
        location,
        block.display_name_with_default,
        col.aspects_json(data),
        numbered.order,
        str(getattr(block, "edited_on", "")),
    )
