"""
LMS URLs: the devstack serves no pages of its own, only the Django admin and what plugins contribute, in
edx-platform's order (``lms/urls.py``: the admin when ``DEBUG`` or ``ENABLE_DJANGO_ADMIN_SITE``, plugins after it).

edx-platform sends the admin's login to the LMS login page; the stand-in has none, so the admin keeps its own.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin import autodiscover as django_autodiscover
from django.urls import path
from edx_django_utils.plugins import get_plugin_url_patterns

urlpatterns = []

if settings.DEBUG or settings.FEATURES.get("ENABLE_DJANGO_ADMIN_SITE"):
    django_autodiscover()
    admin.site.site_header = "LMS Administration"
    admin.site.site_title = admin.site.site_header
    urlpatterns += [path("admin/", admin.site.urls)]

urlpatterns.extend(get_plugin_url_patterns("lms.djangoapp"))
