"""
A partial ``EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG`` in the operator's YAML keeps the plugin's other defaults.

edx-platform's production settings copy every YAML key (but a few merged ones) into the settings module
*before* the plugins' ``production`` settings run, so by the time the plugin merges its defaults with
``ENV_TOKENS`` the setting already holds the operator's partial dict. The stand-in devstack settings follow
that order; this test starts a real LMS / CMS process with them and reads the resolved connection the way the
transport does.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MANAGE_PY = Path(__file__).resolve().parents[2] / "devstack" / "manage.py"

# Printed by the service once Django is set up: the setting, and the connection the transport would use.
REPORT_SCRIPT = """
import json
from django.conf import settings
from aspects_sink.connection import connection_config

try:
    config = connection_config()
    connection = {"url": config.url, "username": config.username, "password": config.password}
except Exception as error:  # reported, so the assertion shows what went wrong
    connection = {"error": f"{type(error).__name__}: {error}"}

print(json.dumps({
    "setting": settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
    "connection": connection,
}))
"""

PASSWORD_ONLY = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG:\n  password: s3cret\n"


def run_service(service, config_path, state_dir):
    """Run ``manage.py <service> shell`` on the devstack (production path) settings and return its report."""
    environment = {
        name: value
        for name, value in os.environ.items()
        # The ClickHouse connection from the environment would be folded into ENV_TOKENS and hide the bug.
        if not name.startswith(("ASPECTS_SINK_", "LMS_CFG", "CMS_CFG", "EDX_PLATFORM_SETTINGS", "DJANGO_"))
    }
    environment.update({f"{service.upper()}_CFG": str(config_path), "DEVSTACK_STATE_DIR": str(state_dir)})
    completed = subprocess.run(
        [sys.executable, str(MANAGE_PY), service, "--settings", "devstack", "shell", "-c", REPORT_SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("service", ["lms", "cms"])
def test_a_password_alone_in_the_yaml_keeps_the_default_url_and_username(service, tmp_path):
    config = tmp_path / f"{service}.yml"
    config.write_text(PASSWORD_ONLY, encoding="utf-8")

    report = run_service(service, config, tmp_path / "state")

    expected = {"url": "http://clickhouse:8123", "username": "ch_lms", "password": "s3cret"}
    setting = report["setting"]
    # Both views at once, so a failure shows what the settings hold and what the transport would get.
    assert {
        "django.conf.settings": {key: setting.get(key) for key in expected},
        "connection_config()": report["connection"],
    } == {"django.conf.settings": expected, "connection_config()": expected}
    assert setting.get("database") == "event_sink"  # and the defaults the YAML does not mention
