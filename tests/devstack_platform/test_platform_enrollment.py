"""Enrollment changes send the platform's signals in edx-platform's order, inside the write's transaction."""

import pytest
from common.djangoapps.student.models import CourseEnrollment
from common.djangoapps.student.signals.signals import ENROLL_STATUS_CHANGE
from django.db import connection
from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.signals import (
    COURSE_ENROLLMENT_CHANGED,
    COURSE_ENROLLMENT_CREATED,
    COURSE_UNENROLLMENT_COMPLETED,
)


@pytest.fixture
def enrollment_signals(record_signals):
    return record_signals(
        CHANGED=COURSE_ENROLLMENT_CHANGED,
        STATUS=ENROLL_STATUS_CHANGE,
        CREATED=COURSE_ENROLLMENT_CREATED,
        UNENROLLED=COURSE_UNENROLLMENT_COMPLETED,
    )


def names(calls):
    return [name if name != "STATUS" else f"STATUS:{kwargs['event']}" for name, kwargs in calls]


def test_enroll_sends_changed_then_status_change_then_created(learner, course_key, enrollment_signals):
    enrollment = CourseEnrollment.enroll(learner, course_key, mode="verified")

    assert names(enrollment_signals) == ["CHANGED", "STATUS:enroll", "CREATED"]
    assert (enrollment.is_active, enrollment.mode) == (True, "verified")


def test_unenroll_sends_changed_then_status_change_then_unenrollment_completed(learner, course_key, enrollment_signals):
    CourseEnrollment.enroll(learner, course_key)
    enrollment_signals.clear()

    CourseEnrollment.unenroll(learner, course_key)

    assert names(enrollment_signals) == ["CHANGED", "STATUS:unenroll", "UNENROLLED"]
    assert CourseEnrollment.objects.get(user=learner, course_id=course_key).is_active is False


def test_mode_only_change_sends_only_changed(learner, course_key, enrollment_signals):
    enrollment = CourseEnrollment.enroll(learner, course_key)
    enrollment_signals.clear()

    enrollment.change_mode("verified")
    enrollment.update_enrollment(mode="verified", is_active=True)  # nothing changes: nothing is sent

    assert names(enrollment_signals) == ["CHANGED"]


def test_enrollment_event_describes_user_course_and_mode(learner, course_key, enrollment_signals):
    CourseEnrollment.enroll(learner, course_key, mode="honor")

    created = dict(enrollment_signals)["CREATED"]
    data = created["enrollment"]
    assert (data.user.id, data.user.pii.username, data.user.pii.name) == (learner.id, "ada", "Ada Lovelace")
    assert (data.course.course_key, data.course.display_name) == (course_key, "Analytics 101")
    assert (data.mode, data.is_active) == ("honor", True)
    assert created["metadata"].event_type == "org.openedx.learning.course.enrollment.created.v1"
    assert created["metadata"].time.tzinfo is not None


def test_enrollment_in_a_course_without_overview_is_allowed(learner, enrollment_signals):
    course_key = CourseKey.from_string("course-v1:NoX+Nothing+Yet")

    enrollment = CourseEnrollment.enroll(learner, course_key)

    assert enrollment.course_overview is None
    assert dict(enrollment_signals)["CREATED"]["enrollment"].course.display_name == ""
    assert CourseEnrollment.objects.get(pk=enrollment.pk).course_id == course_key


@pytest.mark.django_db(transaction=True)
def test_receivers_run_inside_the_enrollment_transaction(learner, course_key):
    in_transaction = []
    COURSE_ENROLLMENT_CREATED.connect(
        lambda **kwargs: in_transaction.append(connection.in_atomic_block), weak=False, dispatch_uid="test-atomic"
    )
    try:
        CourseEnrollment.enroll(learner, course_key)
    finally:
        COURSE_ENROLLMENT_CREATED.disconnect(dispatch_uid="test-atomic")

    assert in_transaction == [True]
    assert connection.in_atomic_block is False
