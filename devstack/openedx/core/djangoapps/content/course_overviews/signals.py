"""
Refresh a course's overview when it is published.

Connected when this app is ready, i.e. before PluginsConfig connects the plugins' receivers, so a plugin
receiving ``course_published`` reads the overview of the version just published, as it would in Open edX.
"""

from django.dispatch import receiver
from xmodule.modulestore.django import COURSE_PUBLISHED

from openedx.core.djangoapps.content.course_overviews.models import CourseOverview


@receiver(COURSE_PUBLISHED, dispatch_uid="course_overviews.refresh_on_course_published")
def refresh_overview_on_publish(sender, course_key, **kwargs):
    CourseOverview.load_from_module_store(course_key)
