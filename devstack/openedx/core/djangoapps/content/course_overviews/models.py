"""
CourseOverview: the catalogue fields of a course, copied from the modulestore on every publish.

Only the fields analytics reads are modelled (edx-platform has some fifty more). Enrollments point at this
table without a database constraint, so an enrollment may exist before its course has an overview.
"""

# ruff: noqa: DJ001 -- nullable text columns are edx-platform's schema, which the plugin must read as it is

from decimal import Decimal

from django.db import models
from model_utils.models import TimeStampedModel
from opaque_keys.edx.keys import CourseKey

from openedx.core.djangoapps.xmodule_django.models import CourseKeyField

# Overview field -> value when the course block does not set it.
FIELDS_FROM_COURSE_BLOCK = {
    "start": None,
    "end": None,
    "advertised_start": None,
    "announcement": None,
    # CourseBlock.lowest_passing_grade: the lowest of its grading policy's GRADE_CUTOFFS, {"Pass": 0.5} by default
    "lowest_passing_grade": Decimal("0.50"),
    "enrollment_start": None,
    "enrollment_end": None,
    "invitation_only": False,
    "max_student_enrollments_allowed": None,
    "self_paced": False,
    "effort": None,
    "enable_proctored_exams": False,
    "entrance_exam_enabled": False,
    "external_id": None,
    "language": None,
}


class CourseOverview(TimeStampedModel):
    id = CourseKeyField(db_index=True, primary_key=True, max_length=255)
    org = models.TextField(max_length=255, default="outdated_entry")
    display_name = models.TextField(null=True)
    start = models.DateTimeField(null=True)
    end = models.DateTimeField(null=True)
    advertised_start = models.TextField(null=True)
    announcement = models.DateTimeField(null=True)
    lowest_passing_grade = models.DecimalField(max_digits=5, decimal_places=2, null=True)
    enrollment_start = models.DateTimeField(null=True)
    enrollment_end = models.DateTimeField(null=True)
    invitation_only = models.BooleanField(default=False)
    max_student_enrollments_allowed = models.IntegerField(null=True)
    self_paced = models.BooleanField(default=False)
    effort = models.TextField(null=True)
    enable_proctored_exams = models.BooleanField(default=False)
    entrance_exam_enabled = models.BooleanField(default=False)
    external_id = models.CharField(max_length=128, null=True, blank=True)
    language = models.TextField(null=True)

    class Meta:
        app_label = "course_overviews"

    def __str__(self):
        return str(self.id)

    @classmethod
    def load_from_module_store(cls, course_id: CourseKey) -> "CourseOverview":
        """
        Copy the published course into its overview (a normal save, so ``post_save`` fires).

        Raises ``CourseOverview.DoesNotExist`` when the modulestore has no such course.
        """
        from xmodule.modulestore.django import modulestore

        course = modulestore().get_course(course_id)
        if course is None:
            raise cls.DoesNotExist(f"No course {course_id} in the modulestore")
        values = {name: getattr(course, name, default) for name, default in FIELDS_FROM_COURSE_BLOCK.items()}
        overview, _ = cls.objects.update_or_create(
            id=course_id,
            defaults={"org": course_id.org, "display_name": course.display_name_with_default, **values},
        )
        return overview

    @classmethod
    def get_from_id(cls, course_id: CourseKey) -> "CourseOverview":
        """The stored overview, created from the modulestore if the course has none yet."""
        try:
            return cls.objects.get(id=course_id)
        except cls.DoesNotExist:
            return cls.load_from_module_store(course_id)
