"""The election's side of work-aware leadership, on a real ZooKeeper ensemble."""

from __future__ import annotations

from kazoo.security import OPEN_ACL_UNSAFE

from chaos.launch import wait_for
from chaos.launch.zookeeper import ZooKeeperEnsemble
from election import ClusterPaths, YieldBudget, read_cluster_status
from election._yield_budget import claim, withdraw
from tests.integration.election.support import ClientFactory, Pool, wait_line


def test_reach_is_published_in_the_member_node_and_refreshed(pool: Pool) -> None:
    c1 = pool.add("c1")
    pool.add("c2")
    assert c1.publish_reach({"service": "ok"}, refresh_s=60)
    assert not c1.publish_reach({"service": "ok"}, refresh_s=60)  # unchanged, not due
    assert c1.publish_reach({"service": "failed"}, refresh_s=60)  # changed: written

    def seen() -> bool:
        mine = {m.name: m for m in pool.electors["c2"].members()}.get("c1")
        return mine is not None and mine.reach == {"service": "failed"}

    wait_for(seen, timeout=10, what="c1's reach in its member node")
    seq = {m.name: m for m in c1.members()}["c1"].reach_seq
    assert c1.publish_reach({"service": "failed"}, refresh_s=0)  # refresh due: rewritten
    wait_for(
        lambda: {m.name: m for m in c1.members()}["c1"].reach_seq > seq,
        timeout=10,
        what="a refreshed sequence number",
    )


def test_a_withheld_standby_leaves_the_line_and_never_takes_over(
    pool: Pool, zk_client: ClientFactory
) -> None:
    client = zk_client()
    for name in ("c1", "c2", "c3"):
        pool.add(name)
    leader = pool.wait_leader()
    wait_line(client, pool.cluster, 3)
    standbys = [n for n in ("c1", "c2", "c3") if n != leader]
    withheld, other = standbys
    pool.electors[withheld].withhold("cannot reach the service while others can")
    wait_line(client, pool.cluster, 2)
    assert withheld not in {c.name for c in read_cluster_status(client, pool.cluster).line}
    pool.electors[leader].stop()
    assert pool.wait_leader(exclude=leader) == other
    pool.electors[withheld].withhold(None)
    wait_line(client, pool.cluster, 2)  # the withheld one back, the stopped one gone
    assert withheld in {c.name for c in read_cluster_status(client, pool.cluster).line}


def test_hand_over_goes_to_the_named_standby_within_the_budget(
    pool: Pool, zk_client: ClientFactory
) -> None:
    for name in ("c1", "c2", "c3"):
        pool.add(name, release_holdoff=0.5)
    leader = pool.wait_leader()
    wait_line(zk_client(), pool.cluster, 3)
    target = sorted(n for n in pool.electors if n != leader)[-1]  # not the first in line
    # The leader checks the target against the line of its own last look.
    wait_for(
        lambda: target in pool.electors[leader].line(),
        timeout=10,
        what=f"{target} in the leader's view of the line",
    )
    refused = pool.electors[leader].hand_over("nobody", "service unreachable", YieldBudget(2, 60))
    assert not refused.done
    assert "not in the election line" in refused.why
    done, why, _ = pool.electors[leader].hand_over(
        target, "service unreachable", YieldBudget(2, 60)
    )
    assert done, why
    assert pool.wait_leader(exclude=leader) == target


def test_the_yield_budget_is_cluster_wide_and_refuses_past_its_limit(
    pool: Pool, zk_client: ClientFactory
) -> None:
    client = zk_client()
    paths = ClusterPaths(pool.cluster)
    client.ensure_path(paths.base)
    budget = YieldBudget(limit=2, window_s=60)
    acl = OPEN_ACL_UNSAFE
    first, used = claim(client, paths, budget, acl, who="c1", why="service")
    assert first is not None
    assert used == 1
    second, used = claim(client, paths, budget, acl, who="c2", why="service")
    assert second is not None
    assert used == 2
    assert claim(client, paths, budget, acl, who="c3", why="service") == (None, 2)
    assert len(client.get_children(paths.yields)) == 2  # the refused claim withdrew itself
    withdraw(client, second)  # a hand-over that did not happen gives its claim back
    third, _ = claim(client, paths, budget, acl, who="c3", why="service")
    assert third is not None
    assert claim(client, paths, YieldBudget(limit=0), acl, who="c1", why="x") == (None, 0)


def test_placement_keeps_the_lease_off_the_zookeeper_leaders_host(
    pool: Pool, zk_ensemble: ZooKeeperEnsemble, zk_client: ClientFactory
) -> None:
    """Each member told which server is "on its host"; the one beside the quorum leader
    moves back in line, succeeds only when alone, and hands over to a member elsewhere."""
    client = zk_client()
    servers = zk_ensemble.hosts.split(",")
    zk_leader = zk_ensemble.leader_index()
    assert zk_leader is not None
    followers = [i for i in range(3) if i != zk_leader]
    seat_of = {"f1": servers[followers[0]], "f2": servers[followers[1]], "z": servers[zk_leader]}

    def add(name: str) -> None:
        pool.add(
            name,
            colocated_server=seat_of[name],
            placement_min_in_office=0.3,
            placement_probe_interval=0.1,
            placement_budget=1,
            placement_budget_window=60.0,
            release_holdoff=0.5,
        )

    def line() -> list[str]:
        return [c.name for c in read_cluster_status(client, pool.cluster).line]

    # f1 leads; z joins second, f2 third: z moves behind f2 while f1 keeps the lease.
    add("f1")
    assert pool.wait_leader() == "f1"
    add("z")
    wait_line(client, pool.cluster, 2)
    add("f2")
    wait_for(lambda: line() == ["f1", "f2", "z"], timeout=10, what="z behind f2 in line")
    assert pool.recorders["f1"].epochs() == pool.recorders["f1"].epochs()[:1]  # no change
    # f1 goes: f2 succeeds, not z.
    pool.electors["f1"].stop()
    assert pool.wait_leader(exclude="f1") == "f2"
    # f2 goes too: z is the only candidate and takes the lease (never leaderless).
    pool.electors["f2"].stop()
    assert pool.wait_leader(exclude="f2") == "z"
    # f1 is back: z, in office on the quorum leader's host, hands the lease over to it.
    add("f1")
    assert pool.wait_leader(exclude="z") == "f1"
    claims = client.get_children(ClusterPaths(pool.cluster).yields)
    assert [c[:2] for c in claims] == ["p-"], claims  # the placement budget, not the yields'
    # The placement budget (1 per 60 s) is apart from the yields': both grant one now.
    paths, acl = ClusterPaths(pool.cluster), OPEN_ACL_UNSAFE
    assert claim(client, paths, YieldBudget(1, 60), acl, who="x", why="p", kind="p")[0] is None
    assert claim(client, paths, YieldBudget(1, 60), acl, who="x", why="y")[0] is not None
