"""The ZooKeeper launcher against the real Debian ZooKeeper."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from chaos.launch import LaunchError, wait_for
from chaos.launch.zookeeper import ZooKeeperEnsemble, four_letter_word


def _client(hosts: str) -> KazooClient:
    client = KazooClient(hosts=hosts, timeout=1.0)
    client.start(timeout=15)
    return client


def test_persistent_data_survives_a_restart_of_the_whole_ensemble(tmp_path: Path) -> None:
    ensemble = ZooKeeperEnsemble(tmp_path / "zk", size=3)
    with ensemble:
        assert four_letter_word(ensemble.client_ports[0], "ruok") == "imok"
        assert ensemble.leader_index() is not None
        client = _client(ensemble.hosts)
        client.create("/pfxha/lab/epoch", b"7", makepath=True)
        client.set("/pfxha/lab/epoch", b"8")
        hosts_before = ensemble.hosts
        client.stop()
        client.close()
    assert not any(ensemble.node(i).running() for i in range(3))
    with ensemble:
        assert ensemble.hosts == hosts_before
        client = _client(ensemble.hosts)
        data, stat = client.get("/pfxha/lab/epoch")
        assert (data, stat.version) == (b"8", 1)
        # Killing the quorum leader: the other two elect a new one and keep serving.
        old = ensemble.leader_index()
        assert old is not None
        ensemble.kill_node(old)
        ensemble.wait_serving([i for i in range(3) if i != old], timeout=20)
        # Serving is not yet answering `srvr` with a mode on a busy machine: poll.
        wait_for(
            lambda: ensemble.leader_index() not in (None, old),
            timeout=20,
            what="a new quorum leader",
        )
        assert client.get("/pfxha/lab/epoch")[0] == b"8"
        ensemble.start_node(old)
        assert all(ensemble.mode(i) in ("leader", "follower") for i in range(3))
        client.stop()
        client.close()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    ensemble = ZooKeeperEnsemble(tmp_path / "zk", size=1)
    with ensemble:
        pass
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", ensemble.client_ports[0]))
    blocker.listen(1)
    try:
        with pytest.raises(LaunchError, match="already in use"):
            ensemble.start()
    finally:
        blocker.close()


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="Java not found"):
        ZooKeeperEnsemble(tmp_path / "zk", java="no-such-java-binary").start()
