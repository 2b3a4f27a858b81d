"""The Grafana dashboard and Prometheus alert rules refer to metrics the service really
exports, and the rules behave as their unit tests say (promtool, from Debian's prometheus)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import analytics.metrics  # noqa: F401 - registers the API's metrics
from outcomes.ingest.metrics import ConsumerMetrics
from outcomes.notifications import DeliveryMetrics

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
_METRIC = re.compile(r"\b(analytics_[a-z_]+)")


def exported() -> set[str]:
    """Every sample name the API and the consumer can expose (histogram parts included), and the
    figures the API reads from the database when scraped."""
    names = set()
    for registry in (REGISTRY, ConsumerMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
                names.add(family.name + suffix)
    names |= {family.name for family in DeliveryMetrics().describe()}  # read from the database at each scrape
    return {name for name in names if name.startswith("analytics_")}


def expressions() -> dict[str, str]:
    found = {}
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"dashboard: {panel['title']}"] = target["expr"]
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alert: {rule['alert']}"] = rule["expr"]
    return found


def test_dashboard_and_alerts_use_only_exported_metrics():
    names = exported()
    assert "analytics_api_requests_total" in names and "analytics_consumer_lag" in names
    unknown = {
        where: sorted(set(_METRIC.findall(expr)) - names)
        for where, expr in expressions().items()
        if set(_METRIC.findall(expr)) - names
    }
    assert unknown == {}


def test_the_dashboard_shows_what_on_call_asks_first():
    titles = {panel["title"] for panel in json.loads((MONITORING / "grafana-dashboard.json").read_text())["panels"]}
    for wanted in ("Consumer lag by partition", "Age of the newest stored outcome", "5xx ratio", "Latency p50 / p99"):
        assert wanted in titles


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes from Debian's prometheus package (scripts/services.sh tools installs it)"
    check = subprocess.run([promtool, "check", "rules", "alerts.yaml"], cwd=MONITORING, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
