"""
What docs/monitoring ships works: the alert rules pass ``promtool check rules``, and every metric the rules and
the Grafana dashboard query is one the LMS endpoint really exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User
from prometheus_client.parser import text_string_to_metric_families

from aspects_sink import health, status
from aspects_sink.models import OutboxEntry, SinkHealth
from tests.support.services import require

MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
METRIC_NAME = re.compile(r"\baspects_sink_[a-z_]+\b")


@pytest.fixture
def exposed_names(operator_clickhouse, client) -> set[str]:
    """The metric names the endpoint exposes (families, and the names of their samples)."""
    OutboxEntry.objects.create(sink="user_profile", object_id="1", state="dead", last_error="ClickHouseRejected: x")
    health.record_failure("user_profile", SinkHealth.REJECTED, "x")
    status.record_sweep()
    client.force_login(User.objects.create_user("ops", is_staff=True))
    text = client.get("/aspects_sink/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update({"counter": {f"{family.name}_total"}, "info": {f"{family.name}_info"}}.get(family.type, set()))
        names.update(sample.name for sample in family.samples)
    return names


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool is not installed (Debian package prometheus: make system-packages)")
    result = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_query_only_exposed_metrics(exposed_names):
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert used and used <= exposed_names, used - exposed_names
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"AspectsSinkLagging", "AspectsSinkDeadLetters", "AspectsSinkPaused", "AspectsSinkMutationFailed"} <= alerts
    assert "AspectsSinkBeatMissing" in alerts


def test_grafana_dashboard_loads_and_queries_only_exposed_metrics(exposed_names):
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    expressions = [target["expr"] for panel in panels for target in panel["targets"]]
    assert all(panel["targets"] and panel["datasource"]["type"] == "prometheus" for panel in panels)
    used = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert used <= exposed_names, used - exposed_names
    # Every family the endpoint exposes is on the dashboard.
    families = {name.removesuffix("_total") for name in exposed_names}
    shown = {name.removesuffix("_total").removesuffix("_info") for name in used}
    assert families - shown <= {"aspects_sink_clickhouse_info"}, families - shown
