"""A real kazoo client in another process is cut from a real ZooKeeper, then healed.

The partitioned client must lose its session (drops only: no reset reaches
it quickly), while a client in this process keeps working; after heal the
partitioned client reconnects with a new session.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from chaos.launch._process import wait_for
from chaos.launch.zookeeper import ZooKeeperEnsemble
from chaos.nemesis import ZkPartition, partition_unavailable, tcp_connections

pytestmark = pytest.mark.skipif(partition_unavailable() is not None, reason="needs root")

_CLIENT = """
import sys, time
from kazoo.client import KazooClient
client = KazooClient(hosts=sys.argv[1], timeout=1.0)
client.add_listener(lambda state: print("STATE", state, flush=True))
client.start(timeout=10)
print("SESSION", hex(client.client_id[0]), flush=True)
while True:
    time.sleep(0.05)
    if client.connected and client.client_id:
        print("SESSION", hex(client.client_id[0]), flush=True)
        time.sleep(0.5)
"""


@pytest.fixture
def victim(zk_single: ZooKeeperEnsemble, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = (tmp_path / "victim.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, zk_single.hosts],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_partition_expires_the_session_and_heal_restores_it(
    zk_single: ZooKeeperEnsemble, victim: subprocess.Popen[str], tmp_path: Path
) -> None:
    log = tmp_path / "victim.log"
    wait_for(lambda: bool(_sessions(log.read_text())), timeout=15, what="victim connected")
    zk_ports = set(zk_single.client_ports)
    assert any(rp in zk_ports for _, rp in tcp_connections(victim.pid))
    first_session = _sessions(log.read_text())[0]

    cut = ZkPartition(victim.pid, zk_single.client_ports)
    try:
        details = cut.inject()
        assert details["connections"]
        wait_for(lambda: "SUSPENDED" in log.read_text(), timeout=5, what="victim suspended")
        # Everyone else still reaches ZooKeeper.
        bystander = KazooClient(hosts=zk_single.hosts, timeout=1.0)
        bystander.start(timeout=5)
        try:
            assert bystander.exists("/") is not None
            # Past the 1 s session the server expires it; the victim cannot know yet.
            time.sleep(1.5)
            assert "LOST" not in log.read_text()
            assert victim.poll() is None
        finally:
            bystander.stop()
            bystander.close()
    finally:
        cut.heal()

    wait_for(lambda: "LOST" in log.read_text(), timeout=10, what="victim learns it was expired")
    wait_for(
        lambda: any(s != first_session for s in _sessions(log.read_text())),
        timeout=10,
        what="victim reconnected with a new session",
    )
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
    assert f"pfxha-partition-{victim.pid}" not in rules
    assert not Path(f"/sys/fs/cgroup/unified/pfxha-partition-{victim.pid}").exists()


# A whole line only: the victim may be writing one while we read the file (a
# fresh-clone CI run once read "SESSION" before the rest of its line).
_SESSION_LINE = re.compile(r"^SESSION (0x[0-9a-f]+)\n", re.MULTILINE)


def _sessions(text: str) -> list[str]:
    """The session ids the victim reported, in order, from complete lines."""
    return _SESSION_LINE.findall(text)
