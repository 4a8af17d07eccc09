"""``pfxha failover``: whether a manual failover to a named member may go ahead, and how.

    plan = plan_failover(status, to="c2", force=False)
    plan.kind       # FailoverKind.REFUSE, REQUEST or FORCE
    plan.reason     # "c1 leads (epoch 7) with a live ZooKeeper session: ..."

A pure function of the cluster's status, like :func:`election._decide.decide`;
:func:`election.request_failover` executes the plan. Unlike a switchover, a
failover does not need the leader's cooperation: with ``force`` it deletes the
leader's ``/leader`` node (by version) and writes the switchover request for the
target in one transaction. That is safe because the epoch fences: the target
leads under a higher epoch, which the service then requires, and the old
leader, should it still be alive, stops at once when its ``/leader`` watch
fires, or within its lease validity if it cannot hear from ZooKeeper at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from election._model import ClusterStatus

__all__ = ["FailoverKind", "FailoverPlan", "plan_failover"]


class FailoverKind(enum.StrEnum):
    REFUSE = "refuse"
    REQUEST = "request"  # nobody leads: only the target may take the free lease
    FORCE = "force"  # depose the leader and hand the lease to the target at once


@dataclass(frozen=True)
class FailoverPlan:
    kind: FailoverKind
    reason: str


def plan_failover(status: ClusterStatus, to: str, *, force: bool) -> FailoverPlan:
    cluster = status.cluster
    leader = status.leader
    if status.paused is not None:
        return FailoverPlan(
            FailoverKind.REFUSE,
            f"cluster {cluster!r} is paused: no member may take the lease (run `pfxha resume`)",
        )
    if leader is not None and leader.name == to:
        return FailoverPlan(FailoverKind.REFUSE, f"{to} already leads cluster {cluster!r}")
    if not any(c.name == to for c in status.line):
        eligible = sorted({c.name for c in status.line if leader is None or c.name != leader.name})
        return FailoverPlan(
            FailoverKind.REFUSE,
            f"{to} is not in the election line of {cluster!r} (eligible: "
            f"{', '.join(eligible) or 'none'}; a member must run, be connected and not be "
            "nofailover)",
        )
    if leader is None:
        return FailoverPlan(FailoverKind.REQUEST, f"nobody leads: {to} takes the free lease")
    if not force:
        return FailoverPlan(
            FailoverKind.REFUSE,
            f"{leader.name} leads (epoch {leader.epoch}) with a live ZooKeeper session: use "
            f"`pfxha switchover --to {to}` for a graceful handover, or add --force if "
            f"{leader.name} is hung or cut off (the epoch fences it)",
        )
    return FailoverPlan(
        FailoverKind.FORCE,
        f"deposing {leader.name} (epoch {leader.epoch}): {to} takes over with a higher epoch",
    )
