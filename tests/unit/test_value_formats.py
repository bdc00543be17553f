"""
The sinks write model times as platform-plugin-aspects does: its ModelSerializers send every model DateTimeField
through Django REST framework (``2026-12-01T13:22:04.333397Z``), and Aspects' readers compare the rows of both
plugins as strings on the day a site switches.
"""

import datetime

import pytest
from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from xmodule.modulestore.course_builder import create_course

from aspects_sink.sinks.base import Stamp
from aspects_sink.sinks.registry import get_sink

UTC = datetime.UTC


def drf(value: datetime.datetime) -> str:
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


@pytest.mark.django_db
def test_enrollment_created_and_profile_image_time_are_written_as_django_rest_framework_writes_them(settings):
    settings.ASPECTS_ENABLE_PII = True
    user = create_user("timely", "timely@example.com", name="Timely")
    uploaded = datetime.datetime(2026, 12, 1, 13, 22, 4, 333397, tzinfo=UTC)
    UserProfile.objects.filter(user=user).update(profile_image_uploaded_at=uploaded)
    CourseEnrollment.enroll(user, create_course("TimeX", "T1", "2026", blocks=2))
    enrollment = CourseEnrollment.objects.get(user=user)

    written = {}
    for sink_name, column in (("user_profile", "profile_image_uploaded_at"), ("course_enrollment", "created")):
        sink = get_sink(sink_name)
        batch = sink.serialize(sink.queryset().filter(user=user), Stamp(version=1))
        written[column] = batch.columns[batch.column_names.index(column)][0]

    assert written == {"profile_image_uploaded_at": "2026-12-01T13:22:04.333397Z", "created": drf(enrollment.created)}
