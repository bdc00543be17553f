"""The stand-in modulestore: publishing, the course_published signal, and reading course trees back."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from opaque_keys.edx.locator import BlockUsageLocator, CourseLocator
from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
from xmodule.modulestore import ModuleStoreEnum
from xmodule.modulestore.block_spec import BlockSpec
from xmodule.modulestore.course_builder import build_course_blocks, create_course
from xmodule.modulestore.django import COURSE_PUBLISHED, modulestore
from xmodule.modulestore.exceptions import ItemNotFoundError
from xmodule.modulestore.store import DevstackModuleStore
from xmodule.modulestore.store_utilities import DETACHED_XBLOCK_TYPES

PUBLISHED_ONLY = ModuleStoreEnum.RevisionOption.published_only


def walk(block):
    yield block
    for child in block.get_children():
        yield from walk(child)


def test_publish_refreshes_the_overview_before_course_published_receivers_run(course_key):
    seen_by_receiver = []

    def receiver(sender, course_key, **kwargs):
        seen_by_receiver.append((sender, CourseOverview.objects.get(id=course_key).display_name))

    COURSE_PUBLISHED.connect(receiver, dispatch_uid="test-overview-order")
    try:
        create_course("DemoX", "Analytics101", "2025", "Analytics 101, second edition", blocks=40)
    finally:
        COURSE_PUBLISHED.disconnect(dispatch_uid="test-overview-order")

    assert seen_by_receiver == [(DevstackModuleStore, "Analytics 101, second edition")]


def test_overview_copies_the_course_block_fields(db):
    start = datetime(2025, 3, 1, tzinfo=UTC)
    course_key = create_course("OrgX", "Fields", "r1", "Fields", blocks=5, start=start, self_paced=True, language="fr")

    overview = CourseOverview.objects.get(id=course_key)

    assert (overview.org, overview.start, overview.self_paced, overview.language) == ("OrgX", start, True, "fr")
    assert overview.end is None


def test_a_failing_receiver_does_not_fail_the_publish(db):
    def failing(**kwargs):
        raise RuntimeError("receiver bug")

    COURSE_PUBLISHED.connect(failing, dispatch_uid="test-failing")
    try:
        course_key = create_course("OrgX", "Robust", "r1", blocks=3)
    finally:
        COURSE_PUBLISHED.disconnect(dispatch_uid="test-failing")

    assert modulestore().get_course(course_key) is not None


def test_course_tree_has_exactly_the_requested_blocks_and_detached_ones_only_in_items(course_key):
    course = modulestore().get_course(course_key, revision=PUBLISHED_ONLY)
    items = modulestore().get_items(course_key, revision=PUBLISHED_ONLY)

    in_tree = list(walk(course))
    assert len(items) == 40
    assert {block.scope_ids.block_type for block in items} - {b.scope_ids.block_type for b in in_tree} == (
        DETACHED_XBLOCK_TYPES
    )
    assert len(in_tree) == 40 - len(DETACHED_XBLOCK_TYPES)
    assert [block.scope_ids.block_type for block in in_tree[:5]] == [
        "course",
        "chapter",
        "sequential",
        "vertical",
        "problem",
    ]


def test_blocks_carry_the_attributes_modulestore_callers_read(course_key):
    course = modulestore().get_course(course_key)
    chapter = course.get_children()[0]
    sequentials = chapter.get_children()

    assert isinstance(chapter.location, BlockUsageLocator)
    assert chapter.location.course_key == course_key
    assert chapter.location.for_branch(None) == chapter.location
    assert chapter.get_parent() is course
    assert course.children[0] == chapter.location
    assert (course.display_name_with_default, chapter.display_name_with_default) == ("Analytics 101", "Section 1")
    assert [s.graded for s in sequentials[:2]] == [False, True]
    assert (course.completion_mode, sequentials[0].get_children()[0].get_children()[0].completion_mode) == (
        "aggregator",
        "completable",
    )
    assert course.edited_on.tzinfo is not None


def test_block_fields_and_unnamed_blocks(db):
    course_key = CourseLocator("OrgX", "Spec", "r1")
    due = datetime(2025, 5, 1, 12, 30, tzinfo=UTC)
    tree = BlockSpec("course", "course", "Spec", [BlockSpec("chapter", "week_one", fields={"due": due, "weight": 2})])

    modulestore().publish_course(course_key, tree)
    chapter = modulestore().get_course(course_key).get_children()[0]

    assert (chapter.due, chapter.weight, chapter.display_name_with_default) == (due, 2, "week one")
    with pytest.raises(AttributeError):
        _ = chapter.not_a_field


def test_every_process_reads_the_published_version_from_the_database(course_key):
    with CaptureQueriesContext(connection) as queries:
        modulestore().get_course(course_key)

    assert len(queries) == 1


def test_unknown_course(db):
    unknown = CourseLocator("OrgX", "Unknown", "r1")

    assert modulestore().get_course(unknown) is None
    with pytest.raises(ItemNotFoundError):
        modulestore().get_items(unknown)


def test_a_course_tree_must_start_with_a_course_block(db):
    with pytest.raises(ValueError, match="course block"):
        modulestore().publish_course(CourseLocator("OrgX", "Bad", "r1"), BlockSpec("chapter", "c1"))


def test_a_block_may_not_appear_twice(db):
    tree = BlockSpec("course", "course", children=[BlockSpec("html", "same"), BlockSpec("html", "same")])

    with pytest.raises(ValueError, match="twice"):
        modulestore().publish_course(CourseLocator("OrgX", "Twice", "r1"), tree)


@pytest.mark.parametrize("blocks", [1, 2, 4, 5, 190, 1001])
def test_course_builder_gives_exactly_the_requested_number_of_blocks(blocks):
    course, detached = build_course_blocks("Sized", blocks)

    assert len(list(walk_spec(course))) + len(detached) == blocks


def walk_spec(spec):
    yield spec
    for child in spec.children:
        yield from walk_spec(child)


def test_a_ten_thousand_block_course_loads_whole(db):
    """Large courses have 5,000-20,000 blocks (how fast they load is for benchmarks/, not a test)."""
    course_key = create_course("OrgX", "Big", "r1", blocks=10_000)

    course = modulestore().get_course(course_key)
    items = modulestore().get_items(course_key)
    locations = [block.location for block in items]

    assert len(items) == len(set(locations)) == 10_000
    assert course.location.block_type == "course"
