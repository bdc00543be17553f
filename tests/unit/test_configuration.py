"""Settings, toggles and the sink registry: how an operator and a site configure the plugin."""

from __future__ import annotations

import sys

import pytest
from waffle.testutils import override_flag

from aspects_sink import toggles
from aspects_sink.conf import BUILTIN_SINK_NAMES, DEFAULTS, PERSONAL_SINK_NAMES, SINK_SETTING_TEMPLATE
from aspects_sink.settings import common, production
from aspects_sink.sinks.registry import UnknownSink, all_sinks, enabled_sinks, get_sink


class FakeSettings:
    """A bare settings object, as the plugin machinery hands to plugin_settings()."""


def platform_settings(env_tokens=None):
    settings = FakeSettings()
    settings.ENV_TOKENS = env_tokens or {}
    common.plugin_settings(settings)
    production.plugin_settings(settings)
    return settings


def test_env_tokens_override_settings_and_partial_dicts_keep_defaults():
    settings = platform_settings(
        {"EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG": {"password": "s3cret"}, "ASPECTS_SINK_BATCH_SIZE": 100}
    )
    assert settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["password"] == "s3cret"
    assert settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["database"] == "event_sink"
    assert settings.ASPECTS_SINK_BATCH_SIZE == 100


def test_the_sweep_is_scheduled_with_the_configured_interval():
    settings = platform_settings({"ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 17})
    assert settings.CELERY_BEAT_SCHEDULE["aspects_sink.sweep_outbox"]["schedule"] == 17


def test_the_sweep_goes_to_the_plugins_queue_when_it_has_one():
    """ASPECTS_SINK_CELERY_QUEUE takes every task of the plugin's, the sweep that beat sends included."""
    settings = platform_settings({"ASPECTS_SINK_CELERY_QUEUE": "aspects"})
    assert settings.CELERY_BEAT_SCHEDULE["aspects_sink.sweep_outbox"]["options"] == {"queue": "aspects"}
    assert "options" not in platform_settings().CELERY_BEAT_SCHEDULE["aspects_sink.sweep_outbox"]


def test_unknown_object_lists_the_valid_names():
    with pytest.raises(UnknownSink) as error:
        get_sink("nope")
    assert "course_overviews" in str(error.value) and "user_profile" in str(error.value)


@pytest.mark.django_db
def test_a_sink_runs_when_its_setting_or_its_waffle_flag_is_on(settings, pii):
    settings.EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED = False
    assert not get_sink("external_id").is_enabled()
    with override_flag("event_sink_clickhouse.external_id.enabled", active=True):
        assert get_sink("external_id").is_enabled()


@pytest.mark.django_db
def test_personal_sinks_stop_when_pii_is_off(settings):
    settings.ASPECTS_ENABLE_PII = False
    names = [sink.name for sink in enabled_sinks()]
    assert "user_profile" not in names and "external_id" not in names  # as Tutor's EVENT_SINK_PII_MODELS


@pytest.mark.django_db
def test_personal_sinks_run_as_tutor_switches_them_on(settings):
    """
    Tutor's ``ASPECTS_ENABLE_PII`` is a Tutor setting: it renders no Django setting of that name (the plugin's
    default, off, stays) but ``EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED = True`` for each of its personal models
    (tutor-contrib-aspects' openedx-common-settings patch). A personal sink switched on by its own setting is sent,
    personal columns of the others included.
    """
    settings.ASPECTS_ENABLE_PII = False  # the plugin's default, copied into the settings by its common settings
    settings.EVENT_SINK_CLICKHOUSE_PII_MODELS = ["user_profile", "external_id", "auth_user"]
    for model in settings.EVENT_SINK_CLICKHOUSE_PII_MODELS:
        setattr(settings, f"EVENT_SINK_CLICKHOUSE_{model.upper()}_ENABLED", True)
    names = [sink.name for sink in enabled_sinks()]
    assert "user_profile" in names and "external_id" in names
    assert toggles.pii_enabled()


def test_the_personal_sinks_have_no_default_switch():
    """The built-in sinks whose rows are personal (``pii``) are the ones whose switch means consent."""
    personal = {name for name, sink in all_sinks().items() if sink.pii and name in BUILTIN_SINK_NAMES}
    assert personal == set(PERSONAL_SINK_NAMES)
    assert not any(SINK_SETTING_TEMPLATE.format(name.upper()) in DEFAULTS for name in personal)


@pytest.mark.django_db
def test_one_personal_switch_is_consent_for_its_own_sink_only(settings):
    """A site that switched on external ids only (Tutor's EVENT_SINK_PII_MODELS narrowed) sends no profiles."""
    settings.ASPECTS_ENABLE_PII = False
    settings.EVENT_SINK_CLICKHOUSE_EXTERNAL_ID_ENABLED = True
    names = [sink.name for sink in enabled_sinks()]
    assert "external_id" in names and "user_profile" not in names


@pytest.mark.django_db
def test_a_waffle_flag_alone_sends_no_personal_data(settings):
    """A sink's run-time flag is no consent to personal data: only settings (Tutor's, or ASPECTS_ENABLE_PII) are."""
    settings.ASPECTS_ENABLE_PII = False
    settings.EVENT_SINK_CLICKHOUSE_USER_PROFILE_ENABLED = False
    with override_flag("event_sink_clickhouse.user_profile.enabled", active=True):
        assert not toggles.pii_enabled()
        assert "user_profile" not in [sink.name for sink in enabled_sinks()]


def test_the_raw_xapi_table_is_in_the_database_tutor_names(settings):
    """
    Tutor passes its ``ASPECTS_XAPI_DATABASE`` as ``xapi_database`` in ``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG``
    (tutor-contrib-aspects' openedx-common-settings); ``ASPECTS_SINK_XAPI_DATABASE``, when set, says otherwise.
    """
    from aspects_sink.sinks.xapi_statements import raw_table

    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": "http://clickhouse:8123", "xapi_database": "openedx"}
    assert raw_table().database == "openedx"
    settings.ASPECTS_SINK_XAPI_DATABASE = "analytics_xapi"
    assert raw_table().database == "analytics_xapi"
    del settings.ASPECTS_SINK_XAPI_DATABASE
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": "http://clickhouse:8123"}
    assert raw_table().database == "xapi"


def test_content_tag_models_are_found_where_openedx_core_moved_them(settings, monkeypatch):
    """
    openedx-core, openedx-learning's successor on newer platforms, moved the tagging models from
    ``openedx_tagging.core.tagging.models`` to ``openedx_tagging.models``: a model configured at a path its package no
    longer has is looked up where the successor keeps it (here the stand-in's real module plays the successor).
    """
    from aspects_sink import edx_platform

    monkeypatch.setitem(
        edx_platform.MOVED_MODULES, "openedx_tagging.gone.models", "openedx_tagging.core.tagging.models"
    )
    settings.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG = {"tag": {"module": "openedx_tagging.gone.models", "model": "Tag"}}
    assert edx_platform.get_model("tag").__name__ == "Tag"
    assert edx_platform.MOVED_MODULES["openedx_tagging.core.tagging.models"] == "openedx_tagging.models"


def test_extra_sinks_come_from_settings(settings):
    settings.ASPECTS_SINK_EXTRA_SINKS = ["example_sinks.ProfileCitySink"]
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "live"))
    try:
        assert "profile_city" in all_sinks()
    finally:
        sys.path.pop(0)


def test_extra_sinks_come_from_entry_points(settings, tmp_path, monkeypatch):
    """A package advertising a class in the ``aspects_sink.sinks`` group adds a sink, core untouched."""
    # The package's metadata; its class is tests.support.site_sinks.LanguageSink.
    dist_info = tmp_path / "site_sinks-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-sinks\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[aspects_sink.sinks]\nlanguage = tests.support.site_sinks:LanguageSink\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.ASPECTS_SINK_EXTRA_SINKS = ["cache-buster"] * 0  # a fresh registry for this settings state
    from aspects_sink.sinks import registry

    registry._registry.cache_clear()
    try:
        assert "profile_language" in all_sinks()
    finally:
        registry._registry.cache_clear()
