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


# Every promtool test file (certificate_test.yml spans weeks at an hourly evaluation).
TEST_FILES = sorted(p.relative_to(PROM).as_posix() for p in (PROM / "tests").glob("*_test.yml"))


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
    assert "tests/certificate_test.yml" in TEST_FILES
    result = _promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_has_a_firing_case_and_a_silent_case() -> None:
    alerts = {rule["alert"] for rule in _rules("alerts.yml")}
    fires: set[str] = set()
    silent: set[str] = set()
    for group in (g for name in TEST_FILES for g in _load(name)["tests"]):
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert alerts - fires == set(), "alerts without a test that makes them fire"
    assert alerts - silent == set(), "alerts without a test where they must stay silent"


def test_every_recording_rule_is_tested_or_feeds_a_tested_alert() -> None:
    tests = "".join((PROM / name).read_text() for name in TEST_FILES)
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


DEPLOYMENT = DOCS.parent / "deployment.md"
RUNBOOK_URL = (
    "{{ with $externalLabels.runbook_base_url }}{{ . }}{{ else }}docs{{ end }}/monitoring.md#"
)


def _install_lines() -> list[str]:
    """The `install` commands of docs/deployment.md's monitoring section, as written."""
    section = DEPLOYMENT.read_text().split("## 8. Monitoring", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("install ")]


def test_documented_installation_loads_only_production_targets(tmp_path: Path) -> None:
    lines = _install_lines()
    assert lines, "docs/deployment.md section 8 installs nothing"
    dest = tmp_path / "etc"
    root = PROM.parents[1]
    for line in lines:
        argv = line.replace("/etc/prometheus/pfxha", str(dest)).split()
        subprocess.run(argv, cwd=root, check=True, timeout=30)
    result = _check_config(dest / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == [
        "alerts.yml",
        "prometheus.yml",
        "recording.yml",
    ]
    config = yaml.safe_load((dest / "prometheus.yml").read_text())
    clusters = {
        group["labels"]["cluster"]
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
    }
    assert clusters == {"prod"}
    assert config["global"]["external_labels"]["runbook_base_url"].startswith("https://")


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_file_sd_example_is_inert_but_valid(tmp_path: Path) -> None:
    assert not list((PROM / "file_sd").glob("*.yml")), "file_sd/*.yml in the repo is loaded"
    for name in ("prometheus.yml", "recording.yml", "alerts.yml"):
        shutil.copy(PROM / name, tmp_path / name)
    (tmp_path / "file_sd").mkdir()
    installed = tmp_path / "file_sd" / "staging.yml"
    installed.write_text("- targets: {not: a list}\n")  # promtool reads file_sd files:
    assert _check_config(tmp_path / "prometheus.yml").returncode != 0  # this one fails
    shutil.copy(PROM / "file_sd" / "staging.yml.example", installed)
    result = _check_config(tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_runbook_url_is_built_from_the_base_url() -> None:
    for rule in _rules("alerts.yml"):
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_URL), rule["alert"]
        assert url[len(RUNBOOK_URL) :].isalnum(), rule["alert"]
