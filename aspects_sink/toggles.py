"""
Switches an operator can flip, annotated for edx-toggles' documentation tooling.

Each sink runs when its Django setting is True **or** its waffle flag is active, the same rule and
names as platform-plugin-aspects, so existing Tutor configuration keeps working. Every toggle's default is
in :data:`aspects_sink.conf.DEFAULTS`; the per-sink setting's annotation is beside its template there.
"""

from __future__ import annotations

from django.conf import settings
from edx_toggles.toggles import SettingToggle, WaffleFlag

from aspects_sink.conf import DEFAULTS, SINK_SETTING_TEMPLATE, aspects_settings

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
#   personal data (user_profile) send nothing, and personal columns of other sinks are sent empty. A personal
#   model's own switch (``EVENT_SINK_CLICKHOUSE_USER_PROFILE_ENABLED = True``, one of
#   ``EVENT_SINK_CLICKHOUSE_PII_MODELS``) turns it on too: that is what Tutor's ASPECTS_ENABLE_PII renders.
# .. toggle_warning: Understand the legal consequences of storing personal data before turning this on.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-21
PII_SETTING = "ASPECTS_ENABLE_PII"

# .. toggle_name: ASPECTS_SINK_XAPI_ENABLED
# .. toggle_implementation: DjangoSetting
# .. toggle_default: True
# .. toggle_description: event-routing-backends' xapi backend records each statement for ClickHouse's raw
#   xAPI table (docs/decisions/0005). Off: no statement is recorded and the schema command creates no raw
#   table; statements recorded before it was switched off are still delivered.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-24
XAPI_SETTING = "ASPECTS_SINK_XAPI_ENABLED"

# .. toggle_name: ASPECTS_SINK_XAPI_IN_REQUEST
# .. toggle_implementation: DjangoSetting
# .. toggle_default: True
# .. toggle_description: Record each event ERB's filters admit where it is emitted, as it was emitted, in the
#   request's own transaction (a rolled-back request records nothing; a broker outage loses nothing); the
#   drain makes ERB's statements of the recorded events, a batch at a time. Off: ERB's asynchronous route,
#   one Celery task per event, which records the event instead.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-24
XAPI_IN_REQUEST_SETTING = "ASPECTS_SINK_XAPI_IN_REQUEST"

# .. toggle_name: ASPECTS_SINK_RETIREMENT_WAIT
# .. toggle_implementation: DjangoSetting
# .. toggle_default: False
# .. toggle_description: Retirement mutations wait until ClickHouse has applied them (``mutations_sync``:
#   1, or 2 on a cluster, so every replica), at the cost of a slower drain of the retirement sink.
# .. toggle_use_cases: open_edx
# .. toggle_creation_date: 2026-11-21
RETIREMENT_WAIT_SETTING = "ASPECTS_SINK_RETIREMENT_WAIT"


def sink_enabled(sink_name: str) -> bool:
    """True when the sink's setting is on (the default) or its waffle flag is active."""
    setting = SettingToggle(SINK_SETTING_TEMPLATE.format(sink_name.upper()), default=True, module_name=__name__)
    if setting.is_enabled():
        return True
    return WaffleFlag(SINK_FLAG_TEMPLATE.format(sink_name), module_name=__name__).is_enabled()


def personal_sink_switch(sink_name: str) -> bool | None:
    """
    A personal sink's own switch as the site set it (True, False), or None when unset: set True, it is the site's
    consent to that sink's personal data (what Tutor's ASPECTS_ENABLE_PII renders); unset, ASPECTS_ENABLE_PII
    decides. The plugin gives these switches no default (aspects_sink.conf.PERSONAL_SINK_NAMES).
    """
    value = getattr(settings, SINK_SETTING_TEMPLATE.format(sink_name.upper()), None)
    return None if value is None else bool(value)


def pii_enabled() -> bool:
    """
    Whether personal data may be sent at all: ``ASPECTS_ENABLE_PII``, or a personal model's sink (one of
    ``EVENT_SINK_CLICKHOUSE_PII_MODELS``) switched on by its own setting. The second is how Tutor says it: its
    ``ASPECTS_ENABLE_PII`` renders no Django setting of that name, but ``EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED =
    True`` for each personal model, as platform-plugin-aspects reads it. A waffle flag is no such consent.
    """
    if aspects_settings.ASPECTS_ENABLE_PII:
        return True
    return any(
        personal_sink_switch(model)
        for model in aspects_settings.EVENT_SINK_CLICKHOUSE_PII_MODELS
        if SINK_SETTING_TEMPLATE.format(model.upper()) not in DEFAULTS  # on by the plugin's default: no consent
    )


def xapi_enabled() -> bool:
    """Whether statements are recorded for ClickHouse."""
    return bool(aspects_settings.ASPECTS_SINK_XAPI_ENABLED)


def xapi_in_request() -> bool:
    """Whether events are recorded in the emitting request (the drain makes their statements)."""
    return bool(aspects_settings.ASPECTS_SINK_XAPI_IN_REQUEST)


def retirement_waits() -> bool:
    """Whether retirement mutations wait for ClickHouse to apply them."""
    return bool(aspects_settings.ASPECTS_SINK_RETIREMENT_WAIT)
