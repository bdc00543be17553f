"""
LMS settings every environment starts from.

Plugins are loaded as in edx-platform: their apps come from the ``lms.djangoapp`` entry point and their
``common`` settings are applied here; PluginsConfig connects their signal receivers.
"""

import devstack_settings
from edx_django_utils.plugins import add_plugins, get_plugin_apps

globals().update(devstack_settings.shared_settings("lms"))

INSTALLED_APPS = devstack_settings.platform_apps()
INSTALLED_APPS.extend(get_plugin_apps("lms.djangoapp"))

add_plugins(__name__, "lms.djangoapp", "common")
