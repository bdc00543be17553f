"""The plugin's LMS URLs, added by edx-platform through ``plugin_app["url_config"]`` (see apps.py)."""

from django.urls import path

from aspects_sink.metrics import metrics_view

app_name = "aspects_sink"
urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
]
