"""LMS URLs: the devstack serves no pages of its own, only what plugins contribute."""

from edx_django_utils.plugins import get_plugin_url_patterns

urlpatterns = get_plugin_url_patterns("lms.djangoapp")
