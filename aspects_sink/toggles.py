"""
Switches an operator can flip, annotated for edx-toggles' documentation tooling.

Each sink runs when its Django setting is True **or** its waffle flag is active, the same rule and
names as platform-plugin-aspects, so existing Tutor configuration keeps working.
"""

from __future__ import annotations

from django.conf import settings
from edx_toggles.toggles import SettingToggle, WaffleFlag

# .. toggle_name: EVENT_SINK_CLICKHOUSE_<SINK>_ENABLED
# .. toggle_implementation: DjangoSetting
# .. toggle_default: True
# .. toggle_description: Send the objects of sink <SINK> (COURSE_OVERVIEWS, USER_PROFILE, EXTERNAL_ID,
#   COURSE_ENROLLMENT, USER_RETIREMENT, or a site's own sink) to ClickHouse, live and in backfills.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-21
SINK_SETTING_TEMPLATE = "EVENT_SINK_CLICKHOUSE_{}_ENABLED"

# .. toggle_name: event_sink_clickhouse.<sink>.enabled
# .. toggle_implementation: WaffleFlag
# .. toggle_default: False
# .. toggle_description: Turns sink <sink> on at run time (Django admin) even when its setting is False.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-21
SINK_FLAG_TEMPLATE = "event_sink_clickhouse.{}.enabled"

# .. toggle_name: ASPECTS_ENABLE_PII
# .. toggle_implementation: DjangoSetting
# .. toggle_default: False
# .. toggle_description: Send personal data (names, usernames, emails). When off, sinks whose rows are
#   personal data (user_profile) send nothing, and personal columns of other sinks are sent empty.
# .. toggle_warning: Understand the legal consequences of storing personal data before turning this on.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-21
PII_SETTING = "ASPECTS_ENABLE_PII"


def sink_enabled(sink_name: str) -> bool:
    """True when the sink's setting is on or its waffle flag is active."""
    setting = SettingToggle(SINK_SETTING_TEMPLATE.format(sink_name.upper()), default=True, module_name=__name__)
    if setting.is_enabled():
        return True
    return WaffleFlag(SINK_FLAG_TEMPLATE.format(sink_name), module_name=__name__).is_enabled()


def pii_enabled() -> bool:
    """Whether personal data may be sent at all."""
    return bool(getattr(settings, PII_SETTING, False))
