"""The student app's signals (edx-platform re-exports them from this package too)."""

from common.djangoapps.student.signals.signals import ENROLL_STATUS_CHANGE, UNENROLL_DONE

__all__ = ["ENROLL_STATUS_CHANGE", "UNENROLL_DONE"]
