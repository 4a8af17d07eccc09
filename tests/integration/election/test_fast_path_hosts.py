"""The fast path across hosts: members in their own network namespaces (needs root).

One ZooKeeper on host ``zk``, each elector a ``chaos.bench._member`` process on its own
host, all on a private bridge (chaos/launch/netns.py). What this proves, that a single
loopback cannot:

- a standby that cannot reach the leader's liveness port (REJECT with a reset, or
  DROP, inside the leader's host) never deposes it: no leader change for 60 s, and
  the standbys publish "unavailable" naming the leader's real address;
- a leader killed with SIGKILL is replaced by a standby on another host through the
  fast path (the takeover's reason says so), well before the session timeout.

Every wait polls with a deadline; the 60 s window is an observation, not a wait.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from chaos.launch import ManagedProcess, wait_for
from chaos.launch.netns import Host, HostNetwork, netns_unavailable
from chaos.launch.zookeeper import ZooKeeperEnsemble
from election import ClusterStatus, read_cluster_status

ROOT = Path(__file__).resolve().parents[3]
LIVENESS_PORT = 9470  # the deployments' port (docs/deployment.md)
NO_CHANGE_WINDOW_S = 60.0

_why_not = netns_unavailable() or (None if shutil.which("iptables") else "iptables missing")
pytestmark = pytest.mark.skipif(_why_not is not None, reason=_why_not or "")


@dataclass
class Lab:
    net: HostNetwork
    zk: ZooKeeperEnsemble
    client: KazooClient
    run_dir: Path
    procs: list[ManagedProcess] = field(default_factory=list)

    def host(self, name: str) -> Host:
        return self.net.add_host(f"{name}{uuid.uuid4().hex[:4]}")

    def member(
        self, host: Host, name: str, cluster: str, *, session_timeout: float
    ) -> ManagedProcess:
        argv = [
            sys.executable, "-m", "chaos.bench._member",
            "--hosts", self.zk.hosts, "--cluster", cluster, "--name", name,
            "--session-timeout", str(session_timeout),
            "--liveness-port", str(LIVENESS_PORT),
        ]  # fmt: skip
        proc = ManagedProcess(
            name,
            host.wrap(argv),
            log_path=self.run_dir / cluster / f"{name}.log",
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT)},
        )
        proc.start()
        self.procs.append(proc)
        return proc

    def status(self, cluster: str) -> ClusterStatus:
        return read_cluster_status(self.client, cluster)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    run_dir = tmp_path_factory.mktemp("hosts")
    net = HostNetwork.create(run_dir)
    zk: ZooKeeperEnsemble | None = None
    client: KazooClient | None = None
    procs: list[ManagedProcess] = []
    try:
        zk_host = net.add_host("zk")
        zk = ZooKeeperEnsemble(run_dir / "zk", placement=[zk_host])
        zk.start()
        client = KazooClient(hosts=zk.hosts, timeout=5.0)  # from the root namespace
        client.start(timeout=30)
        lab = Lab(net, zk, client, run_dir, procs)
        yield lab
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.kill()
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop()
                client.close()
        if zk is not None:
            zk.stop()
        net.destroy()


def events(proc: ManagedProcess) -> list[dict[str, Any]]:
    """The member's JSON lines (its log lines are interleaved and skipped)."""
    out = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def wait_leader(
    lab: Lab, cluster: str, name: str | None = None, *, exclude: str = "", timeout: float = 60
) -> str:
    """Poll /leader until ``name`` (or anyone but ``exclude``) holds it."""
    found: list[str] = []

    def check() -> bool:
        leader = lab.status(cluster).leader
        if leader is not None and name in (None, leader.name) and leader.name != exclude:
            found.append(leader.name)
            return True
        return False

    wait_for(check, timeout=timeout, what=f"{name or 'a'} leader of {cluster}", interval=0.005)
    return found[-1]


def wait_fast_paths(lab: Lab, cluster: str, wanted: dict[str, str], timeout: float = 60) -> None:
    def check() -> bool:
        seen = {m.name: m.fast_path for m in lab.status(cluster).members}
        return all(seen.get(name) == state for name, state in wanted.items())

    wait_for(check, timeout=timeout, what=f"fast path states {wanted}", interval=0.1)


def block_liveness_port(host: Host, how: str) -> None:
    target = ["REJECT", "--reject-with", "tcp-reset"] if how == "reject" else ["DROP"]
    subprocess.run(
        host.wrap(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(LIVENESS_PORT),
                   "-j", *target]),
        check=True,
        capture_output=True,
    )  # fmt: skip


def _blocked_cluster(lab: Lab, how: str) -> tuple[str, dict[str, ManagedProcess], int]:
    """Leader ``a`` with its liveness port blocked ``how``, then standbys ``b`` and ``c``
    that find it unavailable. Returns (cluster, processes, the leader's epoch)."""
    cluster = f"{how[:3]}{uuid.uuid4().hex[:8]}"
    hosts = {name: lab.host(name) for name in ("a", "b", "c")}
    procs = {"a": lab.member(hosts["a"], "a", cluster, session_timeout=4.0)}
    wait_leader(lab, cluster, "a")
    block_liveness_port(hosts["a"], how)
    for name in ("b", "c"):
        procs[name] = lab.member(hosts[name], name, cluster, session_timeout=4.0)
    wait_fast_paths(lab, cluster, {"a": "idle", "b": "unavailable", "c": "unavailable"})

    status = lab.status(cluster)
    assert status.leader is not None
    reasons = {m.name: m.fast_path_reason for m in status.members}
    for name in ("b", "c"):
        # The leader's real address on its host, not a loopback one.
        assert f"{hosts['a'].address}:{LIVENESS_PORT}" in reasons[name], reasons
        assert ("refused" if how == "reject" else "timed out") in reasons[name], reasons
    return cluster, procs, status.epoch


def test_a_leader_whose_liveness_port_is_blocked_is_never_deposed(lab: Lab) -> None:
    # Both ways of blocking (a reset, and silence) in two clusters side by side, observed
    # over one window: the same proof at half the suite time.
    clusters = {how: _blocked_cluster(lab, how) for how in ("reject", "drop")}

    changes: list[tuple[str, str | None, int]] = []
    deadline = time.monotonic() + NO_CHANGE_WINDOW_S
    while time.monotonic() < deadline and not changes:
        for how, (cluster, _, first_epoch) in clusters.items():
            status = lab.status(cluster)
            seen = (status.leader.name if status.leader else None, status.epoch)
            if seen != ("a", first_epoch):
                changes.append((how, *seen))
        time.sleep(0.25)  # the sampling period of the observation, not a synchronisation
    assert changes == [], f"leader changed within {NO_CHANGE_WINDOW_S:.0f}s: {changes}"
    for _, procs, _ in clusters.values():
        for name in ("b", "c"):
            assert not [e for e in events(procs[name]) if e["event"] == "elected"]
        assert all(proc.running() for proc in procs.values())


def test_a_killed_leader_is_replaced_through_the_fast_path_across_hosts(lab: Lab) -> None:
    session_timeout = 10.0  # long: a takeover in well under it can only be the fast path
    cluster = f"kil{uuid.uuid4().hex[:8]}"
    hosts = {name: lab.host(name) for name in ("a", "b", "c")}
    procs = {"a": lab.member(hosts["a"], "a", cluster, session_timeout=session_timeout)}
    wait_leader(lab, cluster, "a")
    for name in ("b", "c"):
        procs[name] = lab.member(hosts[name], name, cluster, session_timeout=session_timeout)
    wait_fast_paths(lab, cluster, {"a": "idle", "b": "armed", "c": "armed"})
    before = lab.status(cluster)
    assert before.leader is not None
    assert before.leader.liveness == f"{hosts['a'].address}:{LIVENESS_PORT}"

    assert procs["a"].pid is not None
    procs["a"].kill()  # SIGKILL: the kernel closes the liveness socket at once
    killed_at = time.monotonic()
    successor = wait_leader(lab, cluster, exclude="a", timeout=2 * session_timeout)
    took = time.monotonic() - killed_at
    assert successor in ("b", "c")
    assert lab.status(cluster).epoch == before.epoch + 1
    assert took < session_timeout / 2, f"takeover took {took:.2f}s"
    print(f"takeover across hosts after SIGKILL: {took * 1000:.0f} ms")

    def took_over_through_the_fast_path() -> bool:
        # The successor prints its role change just after its transaction: poll for it.
        return any(
            e["event"] == "role"
            and e["new"] == "leader"
            and "liveness socket of leader a" in e["reason"]
            for e in events(procs[successor])
        )

    wait_for(took_over_through_the_fast_path, timeout=30, what=f"{successor}'s takeover reason")
