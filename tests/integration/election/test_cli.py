"""``pfxha status`` and ``pfxha switchover`` against a running election."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from chaos.launch import wait_for
from connector.cli import root
from election import read_cluster_status
from tests.integration.election.support import Pool, wait_line


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
