"""The course overview API that event-routing-backends imports from edx-platform."""

from collections.abc import Iterable
from datetime import datetime

from opaque_keys.edx.keys import CourseKey

from openedx.core.djangoapps.content.course_overviews.models import CourseOverview

SERIALIZED_FIELDS = (
    "id",
    "display_name",
    "org",
    "start",
    "end",
    "enrollment_start",
    "enrollment_end",
    "self_paced",
    "invitation_only",
    "language",
)


def get_course_overviews(course_ids: Iterable[CourseKey]) -> list[dict]:
    """
    The overviews of the given courses as dictionaries (edx-platform serializes them too); courses without an
    overview are left out.
    """
    overviews = CourseOverview.objects.filter(id__in=[str(course_id) for course_id in course_ids])
    return [{name: _serializable(getattr(overview, name)) for name in SERIALIZED_FIELDS} for overview in overviews]


def _serializable(value):
    """Strings for keys and dates, as edx-platform's serializer returns them."""
    if isinstance(value, CourseKey):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
