"""``pfxha status`` and ``pfxha switchover`` against a running election."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from connector.cli import root
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
