"""Both services load plugins the way edx-platform does: entry points, plugin settings, ENV_TOKENS."""

import os
import subprocess
import sys
from pathlib import Path

import devstack_settings
import pytest
from django.conf import settings
from processes import function_call_code, read_result, shell_code

from tests.support import scenarios

REPO_ROOT = Path(__file__).resolve().parents[2]
MANAGE_PY = REPO_ROOT / "devstack" / "manage.py"


def run_service(service, *args, env=None):
    """Run ``manage.py <service> <args> shell`` and return what a plugin sees there (``scenarios.plugin_report``)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ASPECTS_SINK_", "LMS_CFG", "CMS_CFG", "EDX_PLATFORM_SETTINGS", "DJANGO_"))
    }
    # tests.support.scenarios, as Devstack.env() provides it
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    code = shell_code(function_call_code(scenarios.plugin_report))
    completed = subprocess.run(
        [sys.executable, str(MANAGE_PY), service, *args, "shell", "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return read_result(completed.stdout)


def test_test_settings_load_plugins_from_their_entry_points():
    assert "aspects_sink.apps.AspectsSinkConfig" in settings.INSTALLED_APPS
    assert "event_routing_backends.apps.EventRoutingBackendsConfig" in settings.INSTALLED_APPS
    assert not any(app.startswith(("aspects_sink", "event_routing")) for app in devstack_settings.PLATFORM_APPS)
    assert settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["database"] == "event_sink"
    assert settings.XAPI_EVENTS_ENABLED is True
    assert "event_transformer" in settings.EVENT_TRACKING_BACKENDS


def test_test_settings_queue_tasks_in_a_state_dir_of_their_own():
    assert not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)
    assert Path(settings.DEVSTACK_STATE_DIR) != devstack_settings.REPO_ROOT / ".devstack"
    if "DEVSTACK_BROKER_URL" not in os.environ:
        assert settings.CELERY_BROKER_URL == "devstackfs://"  # kombu filesystem transport, atomic writes
        assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"].startswith(settings.DEVSTACK_STATE_DIR)
    assert (settings.TIME_ZONE, settings.USE_TZ) == ("UTC", True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "args", "env"),
    [
        ("lms", [], {}),  # --settings defaults to devstack
        ("cms", [], {"EDX_PLATFORM_SETTINGS": "devstack"}),
    ],
)
def test_each_service_applies_plugin_production_settings_from_env_tokens(service, args, env, tmp_path):
    config = tmp_path / f"{service}.yml"
    config.write_text("ASPECTS_SINK_BATCH_SIZE: 1234\nEVENT_SINK_CLICKHOUSE_BACKEND_CONFIG:\n  timeout_secs: 9\n")
    env = {
        **env,
        f"{service.upper()}_CFG": str(config),
        "DEVSTACK_STATE_DIR": str(tmp_path / "state"),
        "ASPECTS_SINK_CLICKHOUSE_URL": "http://clickhouse.example:8123",
        "ASPECTS_SINK_CLICKHOUSE_PASSWORD": "from-env",
    }

    report = run_service(service, *args, env=env)

    assert (report["settings_module"], report["service_variant"]) == (f"{service}.envs.devstack", service)
    assert "aspects_sink.apps.AspectsSinkConfig" in report["installed_apps"]
    assert report["batch_size"] == 1234
    clickhouse = report["clickhouse"]
    assert (clickhouse["url"], clickhouse["password"], clickhouse["timeout_secs"]) == (
        "http://clickhouse.example:8123",
        "from-env",
        9,
    )
    assert clickhouse["database"] == "event_sink"  # defaults the tokens leave alone are kept


@pytest.mark.slow
@pytest.mark.parametrize("service", ["lms", "cms"])
def test_settings_a_tutor_plugin_appends_reach_the_periodic_sweep(service, tmp_path):
    """
    Tutor appends its plugins' settings patches after the platform's production settings, so after every plugin's
    settings have run: the sweep's interval and queue set there are what beat sends.
    """
    patch = tmp_path / "openedx-common-settings.py"
    patch.write_text('ASPECTS_SINK_SWEEP_INTERVAL_SECONDS = 17\nASPECTS_SINK_CELERY_QUEUE = "aspects"\n')
    env = {"DEVSTACK_STATE_DIR": str(tmp_path / "state"), "DEVSTACK_TUTOR_PATCH": str(patch)}

    report = run_service(service, "--settings", "tutor", env=env)

    assert report["settings_module"] == f"{service}.envs.tutor"
    assert (report["sweep"]["schedule"], report["sweep"]["options"]) == (17, {"queue": "aspects"})


@pytest.mark.slow
def test_each_service_connects_the_plugin_receivers_of_its_own_project_type(tmp_path):
    env = {"DEVSTACK_STATE_DIR": str(tmp_path)}

    lms = run_service("lms", "--settings", "test", env=env)
    cms = run_service("cms", "--settings=test", env=env)

    assert (lms["settings_module"], cms["settings_module"]) == ("lms.envs.test", "cms.envs.test")
    assert "aspects_sink.receivers.on_enrollment_event" in lms["enrollment_receivers"]
    assert "aspects_sink.receivers.on_enrollment_event" in cms["enrollment_receivers"]  # Studio enrolls too
    assert "aspects_sink.receivers.on_course_published" not in lms["publish_receivers"]
    assert "aspects_sink.receivers.on_course_published" in cms["publish_receivers"]
    # The overview refresh is connected before any plugin receiver.
    assert cms["publish_receivers"][0] == "course_overviews.refresh_on_course_published"


def test_manage_py_creates_a_missing_mysql_database(monkeypatch, mariadb):
    import pymysql

    name = f"aspects_devstack_missing_{os.getpid()}"
    monkeypatch.setenv("DEVSTACK_DB", "mysql")
    monkeypatch.setenv("DEVSTACK_MYSQL_DB", name)

    devstack_settings.ensure_database_exists()

    params = devstack_settings.mysql_connection_params()
    connection = pymysql.connect(**params)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT DATABASE()")
            assert cursor.fetchone() == (name,)
            cursor.execute(f"DROP DATABASE `{name}`")
    finally:
        connection.close()
