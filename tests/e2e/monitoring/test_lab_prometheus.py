"""Real Prometheus against a running lab: the repo's rules see what the connectors do.

The whole lab (ZooKeeper x3, CFSSL, the service, three real connector
processes) with Prometheus scraping every connector at 1 s. Prometheus must
count exactly one leader; after the leader is killed (-9) the count returns to
one within the failover target, and the split-brain alert never fires; with
every connector stopped, the no-active-connector alert fires.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.lab.lab import Lab
from chaos.launch import wait_for
from chaos.launch.prometheus import PrometheusServer
from tests.fixtures.prometheus import LEADERS

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="Debian prometheus not installed"
)

# A crash is detected through the liveness socket; the count may lag by one
# scrape and one rule evaluation (1 s each). Loose, not a benchmark.
FAILOVER_TARGET_S = 10.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    run_dir: Path = tmp_path_factory.mktemp("lab")
    with Lab(run_dir, connectors=3, prometheus=True) as running:
        yield running


def _prom(lab: Lab) -> PrometheusServer:
    assert lab.prometheus is not None
    return lab.prometheus


def _leader_instances(prom: PrometheusServer) -> list[str]:
    found = prom.query('pfxha_connector_role{pfxha_connector_role="leader"} == 1')
    return sorted(s.labels["instance"] for s in found)


def test_one_leader_failover_and_alerts(lab: Lab) -> None:
    prom = _prom(lab)
    prom.wait_targets_up(count=3, timeout=30)
    assert prom.wait_value(LEADERS, lambda v: v == 1, timeout=20) == 1
    epoch_before = prom.value("max(pfxha_connector_epoch)")
    assert epoch_before is not None
    assert epoch_before >= 1
    (old_instance,) = _leader_instances(prom)

    leader = lab.leader()
    assert leader.name is not None
    split_brain_seen: list[str] = []

    lab.kill_connector(leader.name)
    killed_at = time.monotonic()

    def new_leader_counted() -> bool:
        if "PfxhaSplitBrain" in prom.firing():
            split_brain_seen.append("firing")
        instances = _leader_instances(prom)
        return len(instances) == 1 and instances != [old_instance]

    wait_for(new_leader_counted, timeout=FAILOVER_TARGET_S, what="Prometheus counts a new leader")
    seen_after = time.monotonic() - killed_at
    print(f"Prometheus counted the new leader {seen_after:.2f}s after kill -9 of the old one")
    assert prom.value(LEADERS) == 1
    epoch_after = prom.value("max(pfxha_connector_epoch)")
    assert epoch_after is not None
    assert epoch_after > epoch_before
    assert split_brain_seen == []
    assert seen_after < FAILOVER_TARGET_S

    # Every connector stopped: nobody leads, and the alert says so.
    for name in lab.connector_names():
        lab.terminate_connector(name)
    wait_for(
        lambda: "PfxhaNoActiveConnector" in prom.firing(),
        timeout=30,
        what="PfxhaNoActiveConnector firing",
    )
    assert "PfxhaSplitBrain" not in prom.firing()
