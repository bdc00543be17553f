"""The student app's models and helpers, importable from ``common.djangoapps.student.models`` as upstream."""

from common.djangoapps.student.models.course_enrollment import CourseEnrollment, EnrollStatusChange
from common.djangoapps.student.models.user import (
    UserProfile,
    get_potentially_retired_user_by_username,
    get_retired_email_by_email,
    get_retired_username_by_username,
)

__all__ = [
    "CourseEnrollment",
    "EnrollStatusChange",
    "UserProfile",
    "get_potentially_retired_user_by_username",
    "get_retired_email_by_email",
    "get_retired_username_by_username",
]
