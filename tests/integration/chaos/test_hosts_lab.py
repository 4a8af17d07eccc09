"""The hosts lab: each part in its own network namespace, reachable only over the bridge.

Real ZooKeeper x3, CFSSL, the service and connectors, each started inside a lab
host by ``Lab(hosts=True)``; checked from the harness in the root namespace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from chaos.lab.lab import Lab
from chaos.launch import wait_for
from chaos.launch._process import port_open
from chaos.launch.deployed import ADDED, CONNECTOR_TEMPLATE, SUBSTITUTED, lab_prefixes
from chaos.launch.netns import NETWORK_FILE, HostNetwork, netns_unavailable
from chaos.launch.unit import SystemdUnit, pfxha_script
from tests.unit.deploy.test_lab_template import changes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_every_part_lives_on_its_own_host_and_nothing_is_left(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab", connectors=3, hosts=True, seed_devices=False)
    try:
        lab.start()
        endpoints = lab.endpoints()
        assert endpoints["topology"] == "hosts"
        hosts = endpoints["hosts"]
        # Connector i shares its host with ZooKeeper node i, as deployed; CAs and
        # the service each have a host of their own.
        for i in (1, 2, 3):
            assert hosts[f"c{i}"] == hosts[f"zk{i}"]
        assert len({hosts["c1"], hosts["c2"], hosts["c3"], hosts["ca"], hosts["service"]}) == 5
        assert all(not a.startswith("127.") for a in hosts.values())
        assert endpoints["service"].startswith(f"https://{hosts['service']}:")
        assert lab.zk.hosts == ",".join(f"{hosts[f'zk{i}']}:2181" for i in (1, 2, 3))

        # Each process really runs inside its host's namespace.
        network = lab.network
        assert network is not None
        c1_host = lab.host_of["c1"]
        assert lab.connector_pid("c1") in c1_host.pids()
        assert lab.zk.node(0).pid in c1_host.pids()
        assert lab.service is not None
        assert lab.service.pid in lab.host_of["service"].pids()

        # A host's own loopback is its own: the service does not listen on c1's.
        inside = subprocess.run(
            c1_host.wrap(["python3", "-c", "import socket; socket.create_connection(("
                          f"'127.0.0.1', {lab.service.port}), timeout=1)"]),
            capture_output=True, text=True,
        )  # fmt: skip
        assert inside.returncode != 0, "the service answered on another host's loopback"

        # A cut host is silent (no reset), and comes back on restore.
        metrics_port = lab.fleet.metrics_ports["c1"] if lab.fleet else 0
        assert port_open(c1_host.address, metrics_port, timeout=1.0)
        network.cut(c1_host)
        try:
            assert not port_open(c1_host.address, metrics_port, timeout=0.5)
        finally:
            network.restore(c1_host)
        assert port_open(c1_host.address, metrics_port, timeout=2.0)

        # Each connector as deploy/systemd sets one up: its config is the reference
        # template with only the documented substitutions, its command line the
        # unit's ExecStart (program and paths moved), enrolled into the state dir.
        fleet = lab.fleet
        assert fleet is not None
        home = fleet.directory / "c1"
        prefixes = lab_prefixes(home)
        generated = fleet.config_path("c1").read_text()
        assert fleet.config_path("c1") == home / "etc" / "connector.toml"
        template = CONNECTOR_TEMPLATE.read_text()
        assert changes(template, generated, prefixes) <= SUBSTITUTED | ADDED
        unit = SystemdUnit.read()
        cmdline = Path(f"/proc/{lab.connector_pid('c1')}/cmdline").read_bytes().split(b"\0")
        expected = unit.command(unit.exec_start, prefixes, pfxha_script())
        assert [a.decode() for a in cmdline if a][-len(expected) :] == expected
        assert (home / "state" / "identity" / "cert.pem").is_file()
        assert not (home / "enroll-token").exists()

        # Placement: the template's colocated_server = "auto" finds each host's own
        # ZooKeeper node, and the lease settles off the ZooKeeper leader's host.
        for i in (1, 2, 3):
            said = f"placement on, this host's ZooKeeper server is {hosts[f'zk{i}']}:2181"
            assert said in fleet.log_path(f"c{i}").read_text()

        def off_the_zookeeper_leaders_host() -> bool:
            leader, zk_leader = lab.leader_now()[0], lab.zk.leader_index()
            return leader is not None and zk_leader is not None and leader != f"c{zk_leader + 1}"

        wait_for(off_the_zookeeper_leaders_host, timeout=20, what="the lease off the ZK leader")

        record = json.loads((lab.run_dir / NETWORK_FILE).read_text())
        assert {h["name"] for h in record["hosts"]} == {"node1", "node2", "node3", "ca", "service"}
    finally:
        lab.stop()
    # Only this lab's names: other labs may come and go on a shared machine.
    assert not [ns for ns in _namespaces() if ns.startswith(f"px{record['lab']}-")]
    assert f"px{record['lab']}" not in _links()
    assert not (lab.run_dir / NETWORK_FILE).exists()


def test_sweep_removes_what_a_crashed_supervisor_left(tmp_path: Path) -> None:
    # A supervisor killed after creating hosts leaves only its record behind.
    net = HostNetwork.create(tmp_path)
    host = net.add_host("orphan")
    assert host.netns in _namespaces()
    assert HostNetwork.sweep(tmp_path) is True
    assert host.netns not in _namespaces()
    assert host.link not in _links()
    assert HostNetwork.sweep(tmp_path) is False
