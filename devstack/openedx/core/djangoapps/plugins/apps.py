"""
The app that connects plugins' signal receivers, as edx-platform's PluginsConfig does.

It is the last platform app in INSTALLED_APPS: platform receivers (such as the course overview refresh on
``course_published``) are connected before any plugin receiver and therefore run first.
"""

from django.apps import AppConfig
from django.conf import settings
from edx_django_utils.plugins import connect_plugin_receivers


class PluginsConfig(AppConfig):
    name = "openedx.core.djangoapps.plugins"
    verbose_name = "Django Plugins"

    def ready(self):
        # edx-platform tells the services apart by their URL configuration.
        project_type = "lms.djangoapp" if settings.ROOT_URLCONF == "lms.urls" else "cms.djangoapp"
        connect_plugin_receivers(project_type)
