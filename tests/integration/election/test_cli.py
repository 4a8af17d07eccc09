"""The cluster commands (status, switchover, pause, resume, history) on a live election."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from kazoo.client import KazooClient

from chaos.launch import wait_for
from connector.cli import root
from election import ClusterPaths, read_cluster_status
from election._cluster_nodes import ClusterNodes
from tests.fixtures.zookeeper import expire_session
from tests.integration.election.support import ClientFactory, Pool, leader_of, wait_line


def test_status_and_switchover_from_zookeeper_alone(pool: Pool) -> None:
    for name in ("c1", "c2", "c3"):
        pool.add(name, auth_digest=("connector", "pw"))
    leader = pool.wait_leader()
    wait_line(pool.electors[leader].client, pool.cluster, 3)  # type: ignore[arg-type]
    runner = CliRunner()
    base = ["--hosts", pool.hosts, "--cluster", pool.cluster]

    result = runner.invoke(root, ["status", *base, "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["leader"] == leader
    assert {m["name"] for m in status["members"]} == {"c1", "c2", "c3"}

    table = runner.invoke(root, ["status", *base])
    assert table.exit_code == 0, table.output
    assert leader in table.output

    target = "c2" if leader != "c2" else "c3"
    refused = runner.invoke(root, ["switchover", *base, "--to", target])
    assert refused.exit_code != 0
    assert "NoAuth" in refused.output

    result = runner.invoke(root, ["switchover", *base, "--to", target, "--auth", "connector:pw"])
    assert result.exit_code == 0, result.output
    assert f"{target} leads with epoch {status['epoch'] + 1}" in result.output
    assert pool.wait_leader() == target

    unknown = runner.invoke(root, ["switchover", *base, "--to", "nobody", "--auth", "connector:pw"])
    assert unknown.exit_code != 0
    assert "not an eligible member" in unknown.output


def test_status_and_switchover_take_the_same_auth_file(pool: Pool, tmp_path: Path) -> None:
    """The documented commands: one 0600 USER:PASSWORD file for both (docs/deployment.md)."""
    for name in ("c1", "c2"):
        pool.add(name, auth_digest=("connector", "pw"))
    leader = pool.wait_leader()
    wait_line(pool.electors[leader].client, pool.cluster, 2)  # type: ignore[arg-type]
    auth_file = tmp_path / "zk-auth"
    fd = os.open(auth_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"connector:pw\n")
    os.close(fd)
    runner = CliRunner()
    base = ["--hosts", pool.hosts, "--cluster", pool.cluster, "--auth-file", str(auth_file)]

    status = runner.invoke(root, ["status", *base, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["leader"] == leader

    result = runner.invoke(root, ["switchover", *base])
    assert result.exit_code == 0, result.output
    assert pool.wait_leader() != leader

    wrong = tmp_path / "zk-auth-wrong"
    wrong.write_text("no-colon-here\n")
    wrong.chmod(0o600)
    bad = runner.invoke(root, ["status", *base[:4], "--auth-file", str(wrong)])
    assert bad.exit_code == 2
    assert "must hold USER:PASSWORD" in bad.output


def _fast_paths(hosts: str, cluster: str) -> dict[str, str]:
    result = CliRunner().invoke(root, ["status", "--hosts", hosts, "--cluster", cluster, "--json"])
    assert result.exit_code == 0, result.output
    return {m["name"]: m["fast_path"] for m in json.loads(result.output)["members"]}


def test_status_shows_whether_each_standby_would_notice_a_crash_at_once(pool: Pool) -> None:
    pool.add("c1")
    assert pool.wait_leader() == "c1"
    pool.add("c2")
    wait_for(
        lambda: _fast_paths(pool.hosts, pool.cluster) == {"c1": "idle", "c2": "armed"},
        timeout=10,
        what="c2's probe armed on c1",
    )


def test_an_unreachable_liveness_socket_is_shown_and_deposes_nobody(pool: Pool) -> None:
    # c1 advertises an address where nothing listens (a loopback stand-in for a wrong
    # address or a firewall): every standby's connect is refused. That used to count
    # as proof that c1's process was gone.
    pool.add("c1", liveness_host="127.0.0.1", liveness_advertise="127.0.0.3")
    assert pool.wait_leader() == "c1"
    client = pool.electors["c1"].client
    assert client is not None
    epoch = read_cluster_status(client, pool.cluster).epoch
    pool.add("c2")
    pool.add("c3")
    wait_for(
        lambda: (
            _fast_paths(pool.hosts, pool.cluster)
            == {"c1": "idle", "c2": "unavailable", "c3": "unavailable"}
        ),
        timeout=10,
        what="both standbys to publish that their fast path is unavailable",
    )
    status = read_cluster_status(client, pool.cluster)
    assert status.leader is not None
    assert (status.leader.name, status.epoch) == ("c1", epoch)
    assert pool.leaders() == ["c1"]
    reasons = [m.fast_path_reason for m in status.members if m.name != "c1"]
    assert all("refused" in reason for reason in reasons), reasons
    table = CliRunner().invoke(root, ["status", "--hosts", pool.hosts, "--cluster", pool.cluster])
    assert "fast path unavailable on c2: connect to 127.0.0.3:" in table.output


AUTH = ("connector", "pw")


def _holds(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """``predicate`` stays true, checked every 50 ms, for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.05)


def _three_with_credentials(pool: Pool) -> tuple[str, KazooClient]:
    """c1..c3 under digest ACLs, all in line: the leader's name and its client."""
    for name in ("c1", "c2", "c3"):
        pool.add(name, auth_digest=AUTH)
    leader = pool.wait_leader()
    client = pool.electors[leader].client
    assert client is not None
    wait_line(client, pool.cluster, 3)
    return leader, client


def test_pause_keeps_a_lost_leader_unreplaced_until_resume(pool: Pool) -> None:
    first, client = _three_with_credentials(pool)
    runner = CliRunner()
    base = ["--hosts", pool.hosts, "--cluster", pool.cluster]

    refused = runner.invoke(root, ["pause", *base])
    assert refused.exit_code == 1
    assert "NoAuth" in refused.output
    paused = runner.invoke(root, ["pause", *base, "--auth", "connector:pw", "--reason", "CA work"])
    assert paused.exit_code == 0, paused.output
    assert f"paused: automatic failover off, {first} leads on" in paused.output
    again = runner.invoke(root, ["pause", *base, "--auth", "connector:pw"])
    assert "already paused" in again.output
    assert "(CA work)" in again.output
    # A switchover would hand the lease to nobody: refused.
    switch = runner.invoke(root, ["switchover", *base, "--auth", "connector:pw"])
    assert switch.exit_code == 1
    assert "is paused" in switch.output

    # The leader's session ends (as after a kill -9, once the session timeout passes).
    expire_session(client)
    watcher = pool.electors[next(n for n in pool.electors if n != first)].client
    assert watcher is not None
    wait_for(lambda: leader_of(watcher, pool.cluster) is None, timeout=10, what="/leader to go")
    _holds(
        lambda: not pool.leaders() and leader_of(watcher, pool.cluster) is None,
        3.0,
        "nobody may take over while the cluster is paused",
    )
    status = runner.invoke(root, ["status", *base, "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    assert data["leader"] is None
    assert data["paused"]["reason"] == "CA work"
    table = runner.invoke(root, ["status", *base])
    assert "no leader" in table.output
    assert "paused" in table.output

    resumed = runner.invoke(root, ["resume", *base, "--auth", "connector:pw"])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed: automatic failover on" in resumed.output
    pool.wait_leader()
    assert read_cluster_status(watcher, pool.cluster).paused is None

    # Every leadership is in the history, in epoch order, each ended by the next.
    history = runner.invoke(root, ["history", *base, "--json"])
    assert history.exit_code == 0, history.output
    entries = json.loads(history.output)
    epochs = [e["epoch"] for e in entries]
    elected = sorted(epoch for r in pool.recorders.values() for epoch in r.epochs())
    assert epochs == elected
    assert len(epochs) >= 2
    assert all(a < b for a, b in itertools.pairwise(epochs))
    assert entries[0]["name"] == first
    assert [e["to"] for e in entries[:-1]] == [e["since"] for e in entries[1:]]
    assert entries[-1]["to"] is None


def test_history_is_trimmed_to_its_bound(zk_client: ClientFactory, unique_cluster: str) -> None:
    client = zk_client()
    paths = ClusterPaths(unique_cluster)
    client.ensure_path(paths.history)
    created = [client.create(paths.history_entry("h-"), b"{}", sequence=True) for _ in range(5)]
    nodes = ClusterNodes(client, paths, [], timeout=5.0)
    nodes.trim_history(created[-1], keep=2)
    newest = sorted(p.rsplit("/", 1)[1] for p in created[-2:])
    wait_for(
        lambda: sorted(client.get_children(paths.history)) == newest,
        timeout=10,
        what="the three oldest entries to be trimmed",
    )


def test_a_deleted_history_is_recreated_by_the_next_take(pool: Pool) -> None:
    for name in ("c1", "c2"):
        pool.add(name)
    first = pool.wait_leader()
    client = pool.electors[first].client
    assert client is not None
    wait_line(client, pool.cluster, 2)
    client.delete(ClusterPaths(pool.cluster).history, recursive=True)
    runner = CliRunner()
    base = ["--hosts", pool.hosts, "--cluster", pool.cluster]
    result = runner.invoke(root, ["switchover", *base])
    assert result.exit_code == 0, result.output
    second = pool.wait_leader()
    assert second != first
    history = runner.invoke(root, ["history", *base, "--json"])
    assert [e["name"] for e in json.loads(history.output)] == [second]


def test_show_config_marks_the_member_whose_configuration_differs(pool: Pool) -> None:
    for name, digest in (("c1", "aaaa"), ("c2", "aaaa"), ("c3", "bbbb")):
        pool.add(name, config_digest=digest, member_version="0.1.0")
    leader = pool.wait_leader()
    wait_line(pool.electors[leader].client, pool.cluster, 3)  # type: ignore[arg-type]
    base = ["--hosts", pool.hosts, "--cluster", pool.cluster]
    result = CliRunner().invoke(root, ["show-config", *base, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["c1"]["config_digest"] == "aaaa"
    assert rows["c1"]["differs"] is None
    assert rows["c3"]["differs"] == "configuration bbbb, most members aaaa"
    table = CliRunner().invoke(root, ["show-config", *base])
    assert "bbbb" in table.output


def test_failover_deposes_a_leader_only_with_force(pool: Pool) -> None:
    old, client = _three_with_credentials(pool)
    epoch = read_cluster_status(client, pool.cluster).epoch
    target = "c3" if old != "c3" else "c2"
    runner = CliRunner()
    base = ["--hosts", pool.hosts, "--cluster", pool.cluster, "--auth", "connector:pw"]
    refused = runner.invoke(root, ["failover", *base, "--to", target])
    assert refused.exit_code == 1
    assert "--force" in refused.output
    result = runner.invoke(root, ["failover", *base, "--to", target, "--force"])
    assert result.exit_code == 0, result.output
    assert f"deposing {old} (epoch {epoch})" in result.output
    assert f"{target} leads with epoch" in result.output
    assert pool.wait_leader() == target  # and the deposed leader no longer acts
    status = read_cluster_status(client, pool.cluster)
    assert status.leader is not None
    assert status.leader.epoch > epoch
    assert status.switchover is None  # the target's take removed the request
