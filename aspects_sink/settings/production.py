"""
Production settings: every aspects-sink setting may come from ``ENV_TOKENS`` (Tutor's config).

edx-platform's ``lms/envs/production.py`` copies the YAML config into the settings module
(``vars().update(...)``) *before* it runs the plugins' production settings, so by the time this runs a
mapping given in YAML (say, only the ClickHouse password) has already replaced the whole default. The
operator's value is therefore merged over the plugin's own default (:func:`aspects_sink.conf.merged`),
never over what the settings module holds.
"""

from aspects_sink.conf import DEFAULTS, SINK_SETTING_TEMPLATE, merged
from aspects_sink.settings.common import schedule_sweep

_SINK_SWITCH_PREFIX, _, _SINK_SWITCH_SUFFIX = SINK_SETTING_TEMPLATE.partition("{}")


def plugin_settings(settings):
    """Take whatever the operator set in ENV_TOKENS, mappings merged over the defaults."""
    env_tokens = getattr(settings, "ENV_TOKENS", {}) or {}
    for name, value in env_tokens.items():
        if name in DEFAULTS or _is_sink_switch(name):
            setattr(settings, name, merged(name, value))
    # The sweep's interval may have changed.
    schedule_sweep(settings)


def _is_sink_switch(name: str) -> bool:
    """A site sink's ``EVENT_SINK_CLICKHOUSE_<NAME>_ENABLED``, which has no default of ours."""
    return name.startswith(_SINK_SWITCH_PREFIX) and name.endswith(_SINK_SWITCH_SUFFIX)
