"""
CMS settings for the test suite: a state directory of its own (so a test run shares no broker with a
devstack or with another run) and the plugins' ``test`` settings. Tasks are queued, never run eagerly.
"""

import devstack_settings
from edx_django_utils.plugins import add_plugins

from cms.envs.common import *  # noqa: F403 -- settings are layered, as in edx-platform

globals().update(devstack_settings.test_settings())

add_plugins(__name__, "cms.djangoapp", "test")
