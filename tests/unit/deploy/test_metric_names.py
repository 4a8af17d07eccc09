"""Every metric the dashboard and the rules name is one the code exports.

The exported names come from parsing the exposition of a fresh
ConnectorMetrics registry (with each labelled metric touched once, so label
names show up too), of the stand-in service's ServiceMetrics and of the
ZooKeeper exporter's collector fed a real ``mntr`` reply. Dashboard
queries are also parsed by the real promtool, by wrapping them as recording
rules.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chaos.service.metrics import GaugeSnapshot, ServiceMetrics
from connector.metrics import ROLES, SESSION_STATES, ConnectorMetrics
from connector.zk_exporter import STATES, ZooKeeperCollector
from tests.fixtures.zookeeper_mntr import MNTR_LEADER

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "pfxha-dashboard.json"
RULE_FILES = [ROOT / "deploy" / "prometheus" / n for n in ("recording.yml", "alerts.yml")]

# Labels Prometheus adds to every scraped series (cluster: our target label).
TARGET_LABELS = {"job", "instance", "cluster"}
# Series Prometheus itself produces.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
RANGE = re.compile(r"\[[^\]]*\]")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*[a-zA-Z_]+\)$")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _exported() -> dict[str, set[str]]:
    """Sample name -> label names, from the exposition of a fresh registry."""
    m = ConnectorMetrics(name="n", cluster="c")
    m.set_role("leader", reason="elected")
    m.set_session_state("connected")
    m.request_processed(kind="issue", result="delivered", template="t", ca="x")
    m.observe_issuance(0.1, ca="x")
    m.observe_issue_cpu("ca", 0.002)
    m.observe_revocation(0.1, ca="x")
    m.observe_takeover(0.1)
    m.set_ca_state("x", up=True, circuit="closed")
    m.set_reachable("service", True)
    m.yielded("service")
    m.yield_refused()
    m.coordination_problem("epoch")
    service = ServiceMetrics(
        snapshot=lambda: GaugeSnapshot(
            requests_by_state={"pending": 1},
            revocations_by_state={"pending": 1},
            active_connector="n",
            connectors_by_health={"healthy": 1},
        )
    )
    service.stale_rejected("requests/poll")
    service.forged_refused("bound")
    zk = CollectorRegistry()
    zk.register(ZooKeeperCollector([("zk1", 2181)], fetch=lambda *_: MNTR_LEADER))
    text = generate_latest(m.registry).decode() + generate_latest(service.registry).decode()
    text += generate_latest(zk).decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def _dashboard_exprs() -> Iterator[str]:
    doc = json.loads(DASHBOARD.read_text())

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"expr", "definition"} and isinstance(value, str):
                    yield value
                elif key == "query" and isinstance(value, dict) and "query" in value:
                    yield value["query"]
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    yield from walk(doc)


def _rule_exprs() -> Iterator[str]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield rule["expr"]


def _recorded() -> set[str]:
    return {
        rule["record"]
        for group in yaml.safe_load(RULE_FILES[0].read_text())["groups"]
        for rule in group["rules"]
    }


def _selectors(expr: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Metric names (pfxha_*, recorded, up) with their equality matchers."""
    for name, braces in SELECTOR.findall(RANGE.sub("", expr)):
        if name.startswith("pfxha_") or ":" in name or name in PROMETHEUS_SERIES:
            matchers = {k: v for k, op, v in MATCHER.findall(braces or "") if op == "="}
            yield name, matchers


def test_exposition_is_not_empty() -> None:
    exported = _exported()
    assert "pfxha_connector_role" in exported
    assert "pfxha_connector_takeover_duration_seconds_bucket" in exported


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_named_metric_and_label_is_exported(source: str) -> None:
    exprs = list(_dashboard_exprs() if source == "dashboard" else _rule_exprs())
    assert exprs, f"no expressions found in the {source}"
    exported, recorded = _exported(), _recorded()
    problems: list[str] = []
    seen = 0
    for expr in exprs:
        for name, matchers in _selectors(expr):
            if name in PROMETHEUS_SERIES or name in recorded:
                continue
            seen += 1
            if name not in exported:
                problems.append(
                    f"{name} is exported by neither ConnectorMetrics, ServiceMetrics "
                    "nor the ZooKeeper exporter"
                )
                continue
            for label, value in matchers.items():
                if label not in exported[name] | TARGET_LABELS | {"le"}:
                    problems.append(f"{name} has no label {label!r}")
                if label == "pfxha_connector_role" and value not in ROLES:
                    problems.append(f"{name}: {value!r} is not a role")
                if (
                    label == "pfxha_connector_zookeeper_session_state"
                    and value not in SESSION_STATES
                ):
                    problems.append(f"{name}: {value!r} is not a session state")
                zk_state = name == "pfxha_zookeeper_server_state" and label == "state"
                if zk_state and value not in STATES:
                    problems.append(f"{name}: {value!r} is not a ZooKeeper server state")
    assert seen > 5
    assert problems == []


def test_recorded_series_used_by_the_dashboard_exist() -> None:
    recorded = _recorded()
    for expr in _dashboard_exprs():
        for name, _ in _selectors(expr):
            if ":" in name:
                assert name in recorded, f"dashboard uses {name}, which no rule records"


def test_takeover_slo_bucket_matches_the_rules() -> None:
    from connector.metrics import TAKEOVER_BUCKETS, TAKEOVER_SLO_SECONDS

    assert TAKEOVER_SLO_SECONDS in TAKEOVER_BUCKETS
    text = RULE_FILES[0].read_text()
    assert f'le="{TAKEOVER_SLO_SECONDS}"' in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    # Grafana's own syntax becomes PromQL: variables get values, and the
    # label_values() of a template variable is checked as its selector.
    exprs = [
        LABEL_VALUES.sub(r"\1", e).replace("$__rate_interval", "1m").replace("$cluster", ".*")
        for e in _dashboard_exprs()
    ]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shape() -> None:
    doc = json.loads(DASHBOARD.read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {
        "Active connectors",
        "Epoch over time",
        "Leadership transitions",
        "Throughput",
    } <= titles
    assert {
        "Issuance latency",
        "CA reachable (active connector)",
        "Backlog (pending at the service)",
    } <= titles
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"]), "panel ids must be unique"
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
