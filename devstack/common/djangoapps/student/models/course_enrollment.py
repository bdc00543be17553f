"""
CourseEnrollment and the signals it sends, in edx-platform's order.

``enroll`` creates the row inactive, then activates it through :meth:`CourseEnrollment.update_enrollment`:

* enroll: COURSE_ENROLLMENT_CHANGED, ENROLL_STATUS_CHANGE("enroll"), COURSE_ENROLLMENT_CREATED;
* unenroll: COURSE_ENROLLMENT_CHANGED, ENROLL_STATUS_CHANGE("unenroll"), COURSE_UNENROLLMENT_COMPLETED;
* a mode-only change: COURSE_ENROLLMENT_CHANGED.

Each call runs in one transaction with its write, as edx-platform's requests do (ATOMIC_REQUESTS), so
receivers run before the commit. The tracking-log events (``edx.course.enrollment.*``) that
event-routing-backends turns into xAPI statements are emitted at the same points as upstream.
"""

import logging

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils import timezone
from eventtracking import tracker
from opaque_keys.edx.keys import CourseKey
from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData
from openedx_events.learning.signals import (
    COURSE_ENROLLMENT_CHANGED,
    COURSE_ENROLLMENT_CREATED,
    COURSE_UNENROLLMENT_COMPLETED,
)

from common.djangoapps.student.signals.signals import ENROLL_STATUS_CHANGE, UNENROLL_DONE

log = logging.getLogger(__name__)

DEFAULT_MODE = "audit"

EVENT_NAME_ENROLLMENT_ACTIVATED = "edx.course.enrollment.activated"
EVENT_NAME_ENROLLMENT_DEACTIVATED = "edx.course.enrollment.deactivated"
EVENT_NAME_ENROLLMENT_MODE_CHANGED = "edx.course.enrollment.mode_changed"


class EnrollStatusChange:
    """Values of ENROLL_STATUS_CHANGE's ``event`` argument."""

    enroll = "enroll"
    unenroll = "unenroll"


class CourseEnrollment(models.Model):
    """A user's enrollment in a course; ``is_active`` False means unenrolled, the row stays."""

    user = models.ForeignKey(User, on_delete=models.CASCADE)
    # The column ``course_id`` holds the course key string; no constraint, so no overview row is required.
    course = models.ForeignKey(CourseOverview, db_constraint=False, on_delete=models.DO_NOTHING)
    created = models.DateTimeField(auto_now_add=True, null=True, db_index=True)
    is_active = models.BooleanField(default=True)
    mode = models.CharField(default=DEFAULT_MODE, max_length=100)

    class Meta:
        app_label = "student"
        unique_together = (("user", "course"),)
        ordering = ("user", "course")

    def __str__(self):
        return f"[CourseEnrollment] {self.user_id}: {self.course_id} ({self.created}); active: ({self.is_active})"

    @classmethod
    def enroll(cls, user: User, course_key: CourseKey, mode: str = DEFAULT_MODE) -> "CourseEnrollment":
        """Enroll ``user``, or re-activate their enrollment; the announcements are sent even if already enrolled."""
        with transaction.atomic():
            enrollment, _ = cls.objects.get_or_create(
                user=user, course_id=course_key, defaults={"mode": DEFAULT_MODE, "is_active": False}
            )
            enrollment.update_enrollment(is_active=True, mode=mode)
            enrollment._send_status_change(EnrollStatusChange.enroll)
            COURSE_ENROLLMENT_CREATED.send_event(enrollment=enrollment._event_data(), time=timezone.now())
        return enrollment

    @classmethod
    def unenroll(cls, user: User, course_key: CourseKey) -> None:
        """Deactivate the enrollment; a missing one is only logged, as upstream."""
        with transaction.atomic():
            try:
                enrollment = cls.objects.get(user=user, course_id=course_key)
            except cls.DoesNotExist:
                log.error("Tried to unenroll student %s from %s but they were not enrolled", user, course_key)
                return
            enrollment.update_enrollment(is_active=False)

    def change_mode(self, mode: str) -> None:
        self.update_enrollment(mode=mode)

    def update_enrollment(self, mode: str | None = None, is_active: bool | None = None) -> None:
        """Save a change of mode and/or activation and announce it; ``None`` leaves that attribute as it is."""
        activation_changed = is_active is not None and is_active != self.is_active
        mode_changed = mode is not None and mode != self.mode
        if not (activation_changed or mode_changed):
            return
        with transaction.atomic():
            if activation_changed:
                self.is_active = is_active
            if mode_changed:
                self.mode = mode
            self.save()
            COURSE_ENROLLMENT_CHANGED.send_event(enrollment=self._event_data(), time=timezone.now())

            if activation_changed and self.is_active:
                self._emit_tracking_event(EVENT_NAME_ENROLLMENT_ACTIVATED)
            elif activation_changed:
                UNENROLL_DONE.send(sender=None, course_enrollment=self, skip_refund=False)
                self._emit_tracking_event(EVENT_NAME_ENROLLMENT_DEACTIVATED)
                self._send_status_change(EnrollStatusChange.unenroll)
                COURSE_UNENROLLMENT_COMPLETED.send_event(enrollment=self._event_data(), time=timezone.now())
            if mode_changed:
                self._emit_tracking_event(EVENT_NAME_ENROLLMENT_MODE_CHANGED)

    @property
    def course_overview(self) -> CourseOverview | None:
        try:
            return self.course
        except CourseOverview.DoesNotExist:
            return None

    def _send_status_change(self, event: str) -> None:
        ENROLL_STATUS_CHANGE.send(
            sender=None, event=event, user=self.user, mode=self.mode, course_id=self.course_id, cost=None, currency=None
        )

    def _event_data(self) -> CourseEnrollmentData:
        overview = self.course_overview
        course = CourseData(course_key=self.course_id, display_name=overview.display_name if overview else "")
        user = self.user
        return CourseEnrollmentData(
            user=UserData(
                id=user.id,
                is_active=user.is_active,
                pii=UserPersonalData(username=user.username, email=user.email, name=user.profile.name),
            ),
            course=course,
            mode=self.mode,
            is_active=self.is_active,
            creation_date=self.created,
        )

    def _emit_tracking_event(self, event_name: str) -> None:
        """Emit the tracking-log event; like upstream, a failure is logged and never breaks the enrollment."""
        context = {"course_id": str(self.course_id), "org_id": self.course_id.org}
        data = {"user_id": self.user_id, "course_id": str(self.course_id), "mode": self.mode}
        try:
            with tracker.get_tracker().context(event_name, context):
                tracker.emit(event_name, data)
        except Exception:
            log.exception("Unable to emit event %s for user %s and course %s", event_name, self.user_id, self.course_id)
