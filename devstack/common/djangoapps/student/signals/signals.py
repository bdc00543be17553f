"""Django signals of the student app, at edx-platform's module path."""

from django.dispatch import Signal

# Sent with sender=None and kwargs event ("enroll", "unenroll"), user, mode, course_id, cost, currency,
# when an enrollment is activated or deactivated; not on a mode-only change.
ENROLL_STATUS_CHANGE = Signal()

# Sent with sender=None and kwargs course_enrollment, skip_refund, when an enrollment is deactivated.
UNENROLL_DONE = Signal()
