"""The course_overviews app: a relational copy of each published course's catalogue fields."""

from django.apps import AppConfig


class CourseOverviewsConfig(AppConfig):
    name = "openedx.core.djangoapps.content.course_overviews"
    label = "course_overviews"
    verbose_name = "Course Overviews"

    def ready(self):
        # Connects the course_published receiver that refreshes the overview; see signals.py.
        from openedx.core.djangoapps.content.course_overviews import signals  # noqa: F401
