"""`pfxha zk-exporter` against a real 3-node ZooKeeper: what it exposes, a stopped server.

The exporter runs as the operator runs it: its own process, the CLI, and, where
the system python3 has seccomp (scripts/unit_seccomp.py, as
tests/integration/deploy/test_systemd_seccomp.py uses it), under the
system-call filter of deploy/systemd/pfxha-zk-exporter.service. The test scrapes
its /metrics like Prometheus would and parses the exposition.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient
from prometheus_client.parser import text_string_to_metric_families

from chaos.launch import wait_for
from chaos.launch._process import free_port
from chaos.launch.zookeeper import ZooKeeperEnsemble

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "deploy" / "systemd" / "pfxha-zk-exporter.service"
SYSTEM_PYTHON = "/usr/bin/python3"


def _under_the_units_filter() -> list[str]:
    """The seccomp launcher's argv prefix when it can run here, else nothing."""
    if shutil.which("systemd-analyze") is None or not Path(SYSTEM_PYTHON).exists():
        return []
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        return []
    return [SYSTEM_PYTHON, str(ROOT / "scripts" / "unit_seccomp.py"), str(UNIT), "--"]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def exporter(zk_ensemble_healed: ZooKeeperEnsemble, tmp_path: Path) -> Iterator[str]:
    """The exporter's /metrics URL; the process is stopped with SIGTERM and must exit 0."""
    port = free_port()
    log = (tmp_path / "zk-exporter.log").open("w")
    argv = _under_the_units_filter()
    argv += [sys.executable, "-c", "from connector.cli import main; main()", "zk-exporter"]
    argv += ["--hosts", zk_ensemble_healed.hosts, "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"

    def answers() -> bool:
        assert proc.poll() is None, (tmp_path / "zk-exporter.log").read_text()
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, timeout=20, what="zk-exporter serving /metrics")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        log.close()
    assert code == 0, (tmp_path / "zk-exporter.log").read_text()


def test_exporter_shows_the_ensemble_and_a_stopped_server_as_up_0(
    exporter: str, zk_ensemble_healed: ZooKeeperEnsemble
) -> None:
    zk = zk_ensemble_healed
    servers = [f"127.0.0.1:{port}" for port in zk.client_ports]
    client = KazooClient(hosts=zk.hosts)
    client.start(timeout=15)
    try:
        for i in range(20):  # requests, so that the latency summary counts something
            client.ensure_path(f"/zk-exporter-test/n{i}")
            client.get(f"/zk-exporter-test/n{i}")
    finally:
        client.stop()
        client.close()

    samples = _scrape(exporter)
    assert [_value(samples, "pfxha_zookeeper_up", server=s) for s in servers] == [1, 1, 1]
    states = {
        s: [
            state
            for state in ("leader", "follower", "standalone", "not_serving")
            if _value(samples, "pfxha_zookeeper_server_state", server=s, state=state) == 1
        ]
        for s in servers
    }
    assert sorted(states.values()) == [["follower"], ["follower"], ["leader"]]
    requests = sum(
        _value(samples, "pfxha_zookeeper_request_latency_seconds_count", server=s) or 0
        for s in servers
    )
    assert requests >= 40  # our 20 creates and 20 reads, wherever the client sent them
    for s in servers:
        assert _value(samples, "pfxha_zookeeper_outstanding_requests", server=s) is not None
        assert _value(samples, "pfxha_zookeeper_max_latency_seconds", server=s) is not None

    # Stop a follower (not the leader: no ZooKeeper election to wait for).
    leader = zk.leader_index()
    assert leader is not None
    stopped = (leader + 1) % 3
    zk.stop_node(stopped)
    samples = _scrape(exporter)
    up = {s: _value(samples, "pfxha_zookeeper_up", server=s) for s in servers}
    assert up == {s: (0 if i == stopped else 1) for i, s in enumerate(servers)}
    gone = servers[stopped]
    assert _value(samples, "pfxha_zookeeper_server_state", server=gone, state="follower") is None
    assert _value(samples, "pfxha_zookeeper_outstanding_requests", server=gone) is None
    # The other two still form the quorum, under the same leader.
    ldr = servers[leader]
    assert _value(samples, "pfxha_zookeeper_server_state", server=ldr, state="leader") == 1
