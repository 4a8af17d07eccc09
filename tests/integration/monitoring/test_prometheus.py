"""Real Prometheus (Debian's) scraping real connector metric servers, with the repo's rules.

Three HealthServers, each serving its own ConnectorMetrics registry, stand in
for three connectors; the test moves their roles the way the agent would and
asks Prometheus what it saw. The same launcher serves the lab test that will
scrape real connectors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from chaos.launch import wait_for
from chaos.launch.prometheus import RULE_FILES, RULES_DIR, PrometheusServer, ScrapeTLS
from chaos.launch.service import ServiceProcess, ServiceTLS, self_signed_loopback
from connector.health import HealthServer
from connector.metrics import ConnectorMetrics
from tests.fixtures.prometheus import LEADERS

RUNBOOK_BASE = "https://runbooks.example.internal/pfxha/docs"

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="Debian prometheus not installed"
)

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "pfxha-dashboard.json"


class Connector:
    """A connector's metrics endpoint without the connector: what Prometheus scrapes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.metrics = ConnectorMetrics(name=name, cluster="lab")
        self.metrics.set_session_state("connected")
        for ca in ("primary", "secondary"):
            self.metrics.set_ca_state(ca, up=True, circuit="closed")
        self.server = HealthServer(self.metrics.registry, port=0)
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture
def connectors() -> Iterator[list[Connector]]:
    started = [Connector(n) for n in ("a", "b", "c")]
    yield started
    for c in started:
        c.server.stop()


@pytest.fixture
def prometheus(
    prometheus_server: Callable[..., PrometheusServer], connectors: list[Connector]
) -> PrometheusServer:
    return prometheus_server(
        connectors=[c.address for c in connectors], runbook_base_url=RUNBOOK_BASE
    )


def test_generated_config_passes_promtool(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("placeholder: promtool checks that TLS files exist\n")
    prom = PrometheusServer(
        tmp_path,
        connectors=["127.0.0.1:1"],
        service=["127.0.0.1:2"],
        service_tls=ScrapeTLS(ca_file=ca, cert_file=cert, key_file=key),
    )
    config_path = prom.write_config()
    service_job = next(
        job
        for job in yaml.safe_load(config_path.read_text())["scrape_configs"]
        if job["job_name"] == "pfxha-service"
    )
    assert service_job["scheme"] == "https"
    assert service_job["tls_config"]["cert_file"] == str(cert)
    result = subprocess.run(
        ["promtool", "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_failover_seen_by_prometheus_and_alerts(
    prometheus: PrometheusServer, connectors: list[Connector]
) -> None:
    a, b, c = connectors
    a.metrics.set_role("leader", reason="elected")
    a.metrics.set_epoch(1)
    for standby in (b, c):
        standby.metrics.set_epoch(1)

    prometheus.wait_targets_up(count=3, timeout=20)
    assert prometheus.wait_value(LEADERS, lambda v: v == 1, timeout=10) == 1
    # The repo's recording rules run and carry the cluster target label.
    recorded = prometheus.wait_value(
        'cluster:pfxha_connector_role_leader:sum{cluster="lab"}', lambda v: v == 1, timeout=10
    )
    assert recorded == 1
    loaded = {g["name"] for g in prometheus.rule_groups()}
    assert loaded == _rule_groups_in_repo()

    # Failover: a dies (its endpoint goes away), b takes over under epoch 2.
    a.server.stop()
    b.metrics.set_role("leader", reason="elected")
    b.metrics.set_epoch(2)
    b.metrics.observe_takeover(0.08)
    # Until a's next (failed) scrape marks its series stale, Prometheus still
    # holds its last "leader" sample: wait for the set of leaders to be {b}.
    wait_for(lambda: _leaders(prometheus) == [b.address], timeout=10, what="b the only leader")
    assert prometheus.value(LEADERS) == 1
    assert prometheus.value("max(pfxha_connector_epoch)") == 2
    assert "PfxhaSplitBrain" not in prometheus.firing()

    # Every dashboard query is accepted by the real engine with live data
    # (matching errors such as many-to-many only show at run time).
    for expr in _dashboard_queries():
        prometheus.query(expr)

    # Everyone gone: the no-active-connector alert fires (for: 10s).
    b.server.stop()
    c.server.stop()
    wait_for(
        lambda: "PfxhaNoActiveConnector" in prometheus.firing(),
        timeout=30,
        what="PfxhaNoActiveConnector firing",
    )
    assert "PfxhaSplitBrain" not in prometheus.firing()
    # Its runbook link is built from the runbook_base_url external label.
    urls = {
        a["annotations"]["runbook_url"]
        for a in prometheus.alerts()
        if a["labels"]["alertname"] == "PfxhaNoActiveConnector"
    }
    assert urls == {f"{RUNBOOK_BASE}/monitoring.md#pfxhanoactiveconnector"}


def _rule_groups_in_repo() -> set[str]:
    return {
        group["name"]
        for name in RULE_FILES
        for group in yaml.safe_load((RULES_DIR / name).read_text())["groups"]
    }


def _leaders(prometheus: PrometheusServer) -> list[str]:
    found = prometheus.query('pfxha_connector_role{pfxha_connector_role="leader"} == 1')
    return sorted(s.labels["instance"] for s in found)


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    return [e.replace("$__rate_interval", "1m").replace("$cluster", ".*") for e in exprs]


def test_scrapes_the_real_service_over_https(
    prometheus_server: Callable[..., PrometheusServer],
    start_service: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    cert_pem, key_pem = self_signed_loopback(tmp_path)
    service = start_service(tls=ServiceTLS(cert_pem, key_pem, server_ca=cert_pem))
    assert service.url.startswith("https://")

    prom = prometheus_server(
        service=[service.url.removeprefix("https://")],
        service_tls=ScrapeTLS(ca_file=cert_pem),
    )
    prom.wait_targets_up("pfxha-service", count=1, timeout=20)
    samples = prom.query("pfxha_service_highest_epoch")
    assert [(s.labels["job"], s.labels["cluster"]) for s in samples] == [("pfxha-service", "lab")]
    # The dashboard's service panels run against what the service exports (a
    # fresh service has no requests yet, so only the epoch has data).
    service_exprs = [e for e in _dashboard_queries() if "pfxha_service_" in e]
    assert len(service_exprs) == 3
    for expr in service_exprs:
        result = prom.query(expr)
        if "highest_epoch" in expr:
            assert result, expr
