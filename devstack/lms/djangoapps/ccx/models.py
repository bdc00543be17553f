"""Custom Courses for edX: a coach's copy of a course with its own schedule, at edx-platform's module path."""

# ruff: noqa: DJ001 -- nullable text columns are edx-platform's schema, which the plugin must read as it is

from ccx_keys.locator import CCXLocator
from django.contrib.auth.models import User
from django.db import models
from openedx.core.djangoapps.xmodule_django.models import CourseKeyField


class CustomCourseForEdX(models.Model):
    course_id = CourseKeyField(max_length=255, db_index=True)
    display_name = models.CharField(max_length=255)
    coach = models.ForeignKey(User, db_index=True, on_delete=models.CASCADE)
    # The CCX's schedule, as JSON.
    structure_json = models.TextField(verbose_name="Structure JSON", blank=True, null=True)

    class Meta:
        app_label = "ccx"

    def __str__(self):
        return self.display_name

    @property
    def locator(self) -> CCXLocator:
        """The key of the CCX course: the master course's key plus this CCX's id."""
        return CCXLocator.from_course_locator(self.course_id, str(self.id))
