"""
LMS settings for a running devstack: edx-platform's production path.

The order is that of edx-platform master's ``lms/envs/production.py``:

1. ``_YAML_TOKENS = yaml.safe_load(f)`` on the file named by ``LMS_CFG`` (here: ``ENV_TOKENS``, which also
   carries the ClickHouse connection given by the environment, see ``devstack_settings.env_tokens``);
2. ``vars().update({key: value for key, value in _YAML_TOKENS.items() if key not in [...]})``: every key but
   the merged ones becomes a setting of that name, replacing the default from ``common.py`` wholesale;
3. the merged keys are folded into their defaults (``for feature, value in _YAML_TOKENS.get('FEATURES',
   {}).items(): FEATURES[feature] = value``, ``TRACKING_BACKENDS.update(...)``,
   ``EVENT_TRACKING_BACKENDS['tracking_logs']['OPTIONS']['backends'].update(...)``, ``JWT_AUTH.update(...)``,
   ``REST_FRAMEWORK.update(...)``, ...);
4. ``ENV_TOKENS = _YAML_TOKENS`` and ``add_plugins(__name__, ProjectType.LMS, SettingsType.PRODUCTION)``.

So a plugin's ``production`` settings run after the operator's values have already replaced its defaults.
"""

import devstack_settings
from edx_django_utils.plugins import add_plugins

from lms.envs.common import *  # noqa: F403 -- settings are layered, as in edx-platform

ENV_TOKENS = devstack_settings.env_tokens("LMS_CFG")

# Step 2: every key but the merged ones, as it stands (CACHES among them).
vars().update(devstack_settings.unmerged_tokens(ENV_TOKENS, devstack_settings.LMS_KEYS_WITH_MERGED_VALUES))

# Step 3, for the merged keys the stand-in defines.
FEATURES = {**globals().get("FEATURES", {}), **ENV_TOKENS.get("FEATURES", {})}
EVENT_TRACKING_BACKENDS = devstack_settings.merge_event_tracking_backends(EVENT_TRACKING_BACKENDS, ENV_TOKENS)  # noqa: F405

# Step 4.
AUTH_TOKENS = ENV_TOKENS
add_plugins(__name__, "lms.djangoapp", "production")
