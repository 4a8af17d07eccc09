"""The intruder's attacks on the cluster: anonymous ZooKeeper writes, a compromised
member's garbage, and a revoked leader the cluster must replace by itself.

    results = zookeeper_attacks(lab.zk.hosts, lab.cluster)   # {"zk delete /leader": None, ...}
    results |= coordination_data_attacks(lab)                 # outlived, not refused
    revoked, facts = revoked_leader(lab)     # facts: {"revoked_leader_replaced_s": 0.05, ...}

Outcomes follow :mod:`chaos._intruder_refusals`: None when refused (or
outlived), else what happened instead. ``lab`` is a secure
:class:`chaos.lab.lab.Lab`; the connector added for the revoked-leader round is
removed again before :func:`revoked_leader` returns.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

from kazoo.exceptions import NodeExistsError

from chaos._intruder_ca import ca_refuses, cfssl_of
from chaos._intruder_refusals import BOUND, FAR, refused_by_zookeeper
from chaos.launch._process import wait_for
from election import ClusterPaths, open_client, parse_epoch, read_cluster_status

__all__ = [
    "REPAIR_S",
    "REPLACE_TARGET_S",
    "coordination_data_attacks",
    "revoked_leader",
    "zookeeper_attacks",
]

# A revoked leader must be replaced by the cluster itself (issue 18 saw it keep the
# lease until a manual switchover). The bound is loose on purpose: the attack is
# survived or not; how fast is a figure the drill reports (revoked_leader_replaced_s),
# and a loaded machine (a CI run with parallel workers) must not turn it into a failure.
REPLACE_TARGET_S = 3.0
# How long the cluster has to shrug off a compromised member's writes.
REPAIR_S = 15.0


def zookeeper_attacks(hosts: str, cluster: str) -> dict[str, str | None]:
    base = f"/pfxha/{cluster}"
    with open_client(hosts) as anonymous:
        return {
            "zk delete /leader": refused_by_zookeeper(lambda: anonymous.delete(f"{base}/leader")),
            "zk join the election": refused_by_zookeeper(
                lambda: anonymous.create(
                    f"{base}/election/m-rogue-p99-", ephemeral=True, sequence=True
                )
            ),
            "zk bump /epoch": refused_by_zookeeper(
                lambda: anonymous.set(f"{base}/epoch", str(FAR).encode())
            ),
            "zk write a member": refused_by_zookeeper(
                lambda: anonymous.create(f"{base}/members/rogue", b"{}", ephemeral=True)
            ),
        }


def coordination_data_attacks(lab: Any) -> dict[str, str | None]:
    """A compromised standby writes garbage into the cluster's nodes with its own identity.

    It cannot be refused (a member may write there), so the cluster must outlive
    it: an unreadable switchover request is dropped with no leadership change,
    and an absurd epoch counter is repaired by the next take, whose epoch stays
    within the bound the service accepts (docs/election.md, "Coordination data
    is untrusted input").
    """
    status = read_cluster_status(lab.zk.hosts, lab.cluster)
    if status.leader is None:
        return {"compromised member: no leader to test against": "no leader"}
    leader = status.leader
    member = next((c.name for c in status.line if c.name != leader.name), None)
    if member is None:
        return {"compromised member: no standby in line": "no standby"}
    user, password_file = lab.zk_member_auth(member)
    paths = ClusterPaths(lab.cluster)
    results: dict[str, str | None] = {}
    with open_client(lab.zk.hosts, auth_digest=(user, password_file.read_text().strip())) as own:
        with contextlib.suppress(NodeExistsError):
            own.create(paths.switchover, b"[1, 2]")
        try:
            wait_for(
                lambda: own.exists(paths.switchover) is None,
                timeout=REPAIR_S,
                what="the unreadable switchover request dropped",
            )
            now = lab.leader()
            results["compromised member: unreadable /switchover"] = (
                None
                if (now.name, now.epoch) == (leader.name, leader.epoch)
                else f"leadership moved to {now.name} (epoch {now.epoch})"
            )
        except Exception as exc:
            results["compromised member: unreadable /switchover"] = str(exc)
        own.set(paths.epoch, str(2**62).encode())
    lab.switchover(to=member)  # any take reads the counter

    def repaired() -> bool:
        with open_client(lab.zk.hosts) as reader:
            value, problem = parse_epoch(reader.get(paths.epoch)[0])
        current = lab.leader()
        return problem is None and value is not None and current.epoch > leader.epoch

    try:
        wait_for(repaired, timeout=REPAIR_S, what="a take that repairs the epoch counter")
        epoch = lab.leader().epoch
        results["compromised member: /epoch set to 2^62"] = (
            None if epoch <= BOUND else f"a leader took epoch {epoch}"
        )
    except Exception as exc:
        results["compromised member: /epoch set to 2^62"] = str(exc)
    return results


def revoked_leader(lab: Any) -> tuple[dict[str, str | None], dict[str, Any]]:
    """A connector added for the round leads, is revoked everywhere, and is replaced."""
    name = f"x{secrets.token_hex(2)}"
    results: dict[str, str | None] = {}
    facts: dict[str, Any] = {"revoked_member": name}
    lab.add_connector(name)
    try:
        # In the election line, not only registered: a switchover names only those.
        wait_for(
            lambda: name in {c.name for c in read_cluster_status(lab.zk.hosts, lab.cluster).line},
            timeout=20,
            what=f"{name} in the election line",
        )
        lab.switchover(to=name)
        wait_for(lambda: lab.leader().name == name, timeout=20, what=f"{name} to lead")
        epoch = lab.leader().epoch

        def registered() -> bool:
            with lab.service.admin_client() as admin:
                rows = admin.get("/api/v1/read/connectors").json()
            return any(r["name"] == name and r["epoch"] == epoch for r in rows)

        wait_for(registered, timeout=20, what=f"{name} registered at the service")
        with open_client(lab.zk.hosts) as watch:  # connected before the revocation
            revoked = lab.revoke_member(name, reason="drill: revoked leader", ca=False)
            successor = lab.fleet.wait_for_leader(
                timeout=10, exclude=name, above_epoch=epoch, client=watch
            )
            replaced = time.monotonic() - float(revoked["revoked_at"])
        facts |= {"revoked_leader_replaced_s": round(replaced, 3), "successor": successor}
        results["revoked leader: replaced by the cluster itself"] = (
            None if replaced <= REPLACE_TARGET_S else f"took {replaced:.3f}s"
        )
        lab.cas.deny(name)
        user, password_file = lab.zk_member_auth(name)
        with open_client(
            lab.zk.hosts, auth_digest=(user, password_file.read_text().strip())
        ) as own:
            base = f"/pfxha/{lab.cluster}"
            results["revoked member: zk bump /epoch"] = refused_by_zookeeper(
                lambda: own.set(f"{base}/epoch", str(FAR).encode())
            )
            results["revoked member: zk join the election"] = refused_by_zookeeper(
                lambda: own.create(f"{base}/election/m-{name}-p99-", ephemeral=True, sequence=True)
            )
        if (cfssl := cfssl_of(lab.cas)) is not None:
            results["revoked member: CA issue"] = ca_refuses(cfssl, name)
        results["revoked member: never leads again"] = (
            None if lab.leader().name != name else "leads again"
        )
    finally:
        lab.remove_connector(name)
    return results, facts
