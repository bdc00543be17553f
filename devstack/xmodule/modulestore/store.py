"""
The stand-in modulestore: publishes course trees to the shared database and reads them back.

It keeps only published versions; any ``revision`` argument therefore reads the published course.
"""

import uuid
from collections.abc import Iterable

from devstack_tools.models import PublishedCourseStructure
from django.db import transaction
from django.utils import timezone
from opaque_keys.edx.keys import CourseKey

from xmodule.modulestore import structure_json
from xmodule.modulestore.block_spec import BlockSpec
from xmodule.modulestore.exceptions import ItemNotFoundError
from xmodule.modulestore.published_block import PublishedBlock


class DevstackModuleStore:
    """What ``modulestore()`` returns; it is the sender of course_published."""

    def __init__(self, signal_handler):
        self.signal_handler = signal_handler

    def get_course(self, course_key: CourseKey, revision: str | None = None, **kwargs) -> PublishedBlock | None:
        """The course block, its tree reachable through ``get_children()``; None for an unknown course."""
        loaded = self._load(course_key)
        return loaded[0] if loaded else None

    def get_items(self, course_key: CourseKey, revision: str | None = None, **kwargs) -> list[PublishedBlock]:
        """Every block of the course, detached ones included; raises ItemNotFoundError for an unknown course."""
        loaded = self._load(course_key)
        if loaded is None:
            raise ItemNotFoundError(course_key)
        return loaded[1]

    def publish_course(
        self,
        course_key: CourseKey,
        course_block: BlockSpec,
        detached_blocks: Iterable[BlockSpec] = (),
        user_id: int | None = None,
    ) -> PublishedBlock:
        """
        Replace the course's published version and announce it.

        The structure is saved, then COURSE_PUBLISHED is sent synchronously in the same transaction, as
        edx-platform does at the end of a publish: the course_overviews receiver refreshes the overview first,
        then plugin receivers run.
        """
        if course_block.block_type != "course":
            raise ValueError(f"A course tree starts with a course block, not {course_block.block_type!r}")
        published_on = timezone.now()
        document = structure_json.encode(course_block, detached_blocks, published_on)
        with transaction.atomic():
            PublishedCourseStructure.objects.update_or_create(
                course_id=course_key,
                defaults={
                    "structure": document,
                    "version": uuid.uuid4().hex,
                    "published_on": published_on,
                    "published_by": user_id,
                },
            )
            self.signal_handler.send("course_published", course_key=course_key)
        return structure_json.decode(course_key, document)[0]

    def _load(self, course_key: CourseKey) -> tuple[PublishedBlock, list[PublishedBlock]] | None:
        document = (
            PublishedCourseStructure.objects.filter(course_id=course_key).values_list("structure", flat=True).first()
        )
        if document is None:
            return None
        return structure_json.decode(course_key, document)
