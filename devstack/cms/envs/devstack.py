"""
CMS settings for a running devstack: edx-platform's production path, with ``ENV_TOKENS`` read from the
file named by ``CMS_CFG`` (and the ClickHouse connection from the environment) before the plugins'
``production`` settings read them.
"""

import devstack_settings
from edx_django_utils.plugins import add_plugins

from cms.envs.common import *  # noqa: F403 -- settings are layered, as in edx-platform

ENV_TOKENS = devstack_settings.env_tokens("CMS_CFG")
# As edx-platform's production settings: the operator's cache (Redis, memcached) replaces the default.
CACHES = ENV_TOKENS.get("CACHES", CACHES)  # noqa: F405

add_plugins(__name__, "cms.djangoapp", "production")
