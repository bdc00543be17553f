"""
Courses of any size for tests, demos and seeding, published through the modulestore like a CMS publish.

A course of ``blocks`` blocks has the course block, up to three detached blocks (about, course_info,
static_tab) and a tree course → chapters → sequentials → verticals → problem/video/html leaves, filled
chapter by chapter until the count is reached. Every other sequential is graded.

Block ids are shaped as Studio makes them: 32 hexadecimal digits (``uuid4().hex``) for every block an author
adds, ``course`` for the course block, and the fixed names of the about and course-info pages. Consumers parse
them (Aspects cuts a problem's id at its first underscore), so ids like ``problem_1`` would not do. Here the
hex is derived from the course, the block type and the block's number, so republishing a course keeps its ids,
as a Studio publish does.
"""

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from opaque_keys.edx.keys import CourseKey
from opaque_keys.edx.locator import CourseLocator

from xmodule.modulestore.block_spec import BlockSpec
from xmodule.modulestore.django import modulestore

SEQUENTIALS_PER_CHAPTER = 6
VERTICALS_PER_SEQUENTIAL = 6
LEAVES_PER_VERTICAL = 4
LEAF_TYPES = ("problem", "video", "html")
LABELS = {
    "chapter": "Section",
    "sequential": "Subsection",
    "vertical": "Unit",
    "problem": "Problem",
    "video": "Video",
    "html": "Text",
}
DETACHED_BLOCKS = (  # (block type, block id or None for a Studio-made hex id, display name)
    ("about", "overview", "Overview"),
    ("course_info", "updates", "Course Updates"),
    ("static_tab", None, "Syllabus"),
)
_BLOCK_ID_NAMESPACE = uuid.UUID("0d7b2b1e-52f4-4c57-9a8e-3f1f6a0c2b9d")


def studio_block_id(course: str, block_type: str, number: int) -> str:
    """A block id as Studio makes it (32 hex digits), the same for the same course, type and number."""
    return uuid.uuid5(_BLOCK_ID_NAMESPACE, f"{course}/{block_type}/{number}").hex


def build_course_blocks(
    display_name: str, blocks: int, course_fields: dict[str, Any] | None = None, *, course: str = ""
) -> tuple[BlockSpec, list[BlockSpec]]:
    """
    The course block (with its tree) and the detached blocks of a course of exactly ``blocks`` blocks;
    ``course`` (the course key) seeds the blocks' hex ids.
    """
    if blocks < 1:
        raise ValueError("A course has at least its course block")
    course_block = BlockSpec("course", "course", display_name, fields=dict(course_fields or {}))
    detached = [
        BlockSpec(block_type, block_id or studio_block_id(course, block_type, 1), name)
        for block_type, block_id, name in DETACHED_BLOCKS[: blocks - 1]
    ]
    _fill_tree(course_block, remaining=blocks - 1 - len(detached), course=course)
    return course_block, detached


def _fill_tree(course_block: BlockSpec, remaining: int, course: str) -> None:
    numbers = {block_type: itertools.count(1) for block_type in LABELS}
    ancestors = [course_block]  # ancestors[depth] is the last block added at that depth
    for parent_depth, block_type in itertools.islice(_course_shape(), remaining):
        number = next(numbers[block_type])
        graded = block_type == "sequential" and number % 2 == 0
        fields = {"graded": True, "format": "Homework"} if graded else {}
        block_id = studio_block_id(course, block_type, number)
        block = BlockSpec(block_type, block_id, f"{LABELS[block_type]} {number}", fields=fields)
        ancestors[parent_depth].children.append(block)
        ancestors[parent_depth + 1 :] = [block]


def _course_shape() -> Iterator[tuple[int, str]]:
    """An endless course in tree order, as (depth of the parent, block type); the caller cuts it to size."""
    leaf_types = itertools.cycle(LEAF_TYPES)
    while True:
        yield 0, "chapter"
        for _ in range(SEQUENTIALS_PER_CHAPTER):
            yield 1, "sequential"
            for _ in range(VERTICALS_PER_SEQUENTIAL):
                yield 2, "vertical"
                for _ in range(LEAVES_PER_VERTICAL):
                    yield 3, next(leaf_types)


def create_course(
    org: str,
    course: str,
    run: str,
    display_name: str | None = None,
    *,
    blocks: int = 50,
    start: datetime | None = None,
    end: datetime | None = None,
    self_paced: bool = False,
    user_id: int | None = None,
    **course_fields: Any,
) -> CourseKey:
    """
    Publish a new course (or a new version of it) and return its key. ``course_fields`` are further course
    block fields the overview copies (``language``, ``enrollment_start``, ``invitation_only``, ...).
    """
    course_key = CourseLocator(org, course, run)
    fields = {"start": start, "end": end, "self_paced": self_paced, **course_fields}
    course_block, detached = build_course_blocks(
        display_name or f"{org} {course} {run}", blocks, fields, course=str(course_key)
    )
    modulestore().publish_course(course_key, course_block, detached, user_id=user_id)
    return course_key
