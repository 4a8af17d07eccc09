"""deploy/prometheus: the real promtool checks the config and rules and runs their unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROM = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "monitoring.md"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=60, check=False
    )


def _load(name: str) -> Any:
    return yaml.safe_load((PROM / name).read_text())


def _rules(name: str) -> list[dict[str, Any]]:
    return [rule for group in _load(name)["groups"] for rule in group["rules"]]


def test_check_config_including_rules_and_file_sd() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


def test_check_rules() -> None:
    result = _promtool("check", "rules", "recording.yml", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_case_and_a_silent_case() -> None:
    alerts = {rule["alert"] for rule in _rules("alerts.yml")}
    fires: set[str] = set()
    silent: set[str] = set()
    for group in _load("tests/alerts_test.yml")["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert alerts - fires == set(), "alerts without a test that makes them fire"
    assert alerts - silent == set(), "alerts without a test where they must stay silent"


def test_every_recording_rule_is_tested_or_feeds_a_tested_alert() -> None:
    tests = (PROM / "tests" / "alerts_test.yml").read_text()
    alert_exprs = " ".join(rule["expr"] for rule in _rules("alerts.yml"))
    for rule in _rules("recording.yml"):
        name = rule["record"]
        assert f"expr: {name}" in tests or name in alert_exprs, f"{name} is never exercised"


def test_every_alert_is_explained_in_the_runbook() -> None:
    text = DOCS.read_text().lower()
    for rule in _rules("alerts.yml"):
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert f"### {anchor}" in text, f"docs/monitoring.md has no '### {rule['alert']}' section"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
