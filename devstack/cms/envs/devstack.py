"""
CMS settings for a running devstack: edx-platform's production path, in the order of its
``cms/envs/production.py``, which is the LMS's (see ``lms/envs/devstack.py``) with ``CMS_CFG`` and the CMS's
own list of merged keys.
"""

import devstack_settings
from edx_django_utils.plugins import add_plugins

from cms.envs.common import *  # noqa: F403 -- settings are layered, as in edx-platform

ENV_TOKENS = devstack_settings.env_tokens("CMS_CFG")

# Step 2: every key but the merged ones, as it stands (CACHES among them).
vars().update(devstack_settings.unmerged_tokens(ENV_TOKENS, devstack_settings.CMS_KEYS_WITH_MERGED_VALUES))

# Step 3, for the merged keys the stand-in defines.
FEATURES = {**globals().get("FEATURES", {}), **ENV_TOKENS.get("FEATURES", {})}
EVENT_TRACKING_BACKENDS = devstack_settings.merge_event_tracking_backends(EVENT_TRACKING_BACKENDS, ENV_TOKENS)  # noqa: F405

# Step 4.
AUTH_TOKENS = ENV_TOKENS
add_plugins(__name__, "cms.djangoapp", "production")
