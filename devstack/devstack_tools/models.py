"""Storage of the stand-in modulestore."""

from django.db import models
from openedx.core.djangoapps.xmodule_django.models import CourseKeyField


class PublishedCourseStructure(models.Model):
    """
    The published version of one course, as a JSON document (see ``xmodule.modulestore.structure_json``).

    edx-platform keeps course structures in MongoDB; a table in the shared database gives LMS, CMS and
    workers the same view without another server.
    """

    course_id = CourseKeyField(primary_key=True)
    structure = models.TextField()
    version = models.CharField(max_length=32)
    published_on = models.DateTimeField()
    published_by = models.IntegerField(null=True)

    def __str__(self):
        return f"{self.course_id} @ {self.version}"
