"""``pfxha status`` and ``pfxha switchover`` against a running election."""

from __future__ import annotations

import json

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
