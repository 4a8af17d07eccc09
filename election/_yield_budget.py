"""A cluster-wide budget of voluntary hand-overs, kept in ZooKeeper.

    budget = YieldBudget(limit=3, window_s=600)
    granted, used = claim(client, ClusterPaths("lab"), budget, acl, who="c1", why="service")
    if granted: ... hand over ... else: keep the lease, raise the alert

Each claim creates a sequential node under ``/yields`` (``y-``: gray-failure
yields; another ``kind``, e.g. ``p-`` for placement, is a budget of its own,
counted and trimmed apart); ZooKeeper stamps its
``ctime`` with the server's clock, the one clock every member shares, so the
window is judged without comparing hosts' clocks. Claims older than the window
are trimmed by the next claimer. A claim beyond the limit is withdrawn at once
and refused: members stop yielding (no ping-pong) until the window slides.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from election._acl import shared_acl
from election._errors import ConfigError
from election._paths import ClusterPaths

__all__ = ["HandOver", "YieldBudget", "claim", "withdraw"]


class HandOver(NamedTuple):
    """What :meth:`Elector.hand_over` did: ``done``, why, and whether the budget said no."""

    done: bool
    why: str
    budget_spent: bool = False


@dataclass(frozen=True)
class YieldBudget:
    limit: int = 3
    window_s: float = 600.0

    def validate(self) -> YieldBudget:
        if self.limit < 0:
            raise ConfigError("yield_budget", self.limit, "must be >= 0 (0: never yield)")
        if self.window_s <= 0:
            raise ConfigError("yield_budget_window_s", self.window_s, "must be > 0 seconds")
        return self


def claim(
    client: KazooClient,
    paths: ClusterPaths,
    budget: YieldBudget,
    acl: Sequence[Any],
    *,
    who: str,
    why: str,
    kind: str = "y",
) -> tuple[str | None, int]:
    """Take one yield from the budget: (our claim's path or None if refused, claims of
    ``kind`` in the window including ours)."""
    if budget.limit == 0:
        return None, 0
    if client.exists(paths.yields) is None:
        # Shared by every member: the cluster node's own ACL (with per-member
        # identities it lists them all; our own ACL would lock the others out).
        # ensure_layout creates it at start; this only repairs a deleted one.
        shared = shared_acl(client.get_acls(paths.base)[0], acl)
        if shared is None:
            return None, 0  # others' entries are redacted to us: an operator provisions it
        with contextlib.suppress(NodeExistsError):
            client.create(paths.yields, b"", acl=shared)
    data = json.dumps({"member": who, "why": why[:200]}).encode()
    ours, stat = client.create(
        f"{paths.yields}/{kind}-", data, acl=list(acl), sequence=True, include_data=True
    )
    now_ms = stat.ctime
    window_ms = budget.window_s * 1000
    children = [c for c in client.get_children(paths.yields) if c.startswith(f"{kind}-")]
    pending = [(name, client.exists_async(f"{paths.yields}/{name}")) for name in children]
    recent = 0
    for name, result in pending:
        child = result.get()
        if child is None:
            continue
        if now_ms - child.ctime > window_ms:
            with contextlib.suppress(NoNodeError):
                client.delete(f"{paths.yields}/{name}")
        else:
            recent += 1
    if recent > budget.limit:
        withdraw(client, ours)
        return None, recent - 1
    return ours, recent


def withdraw(client: KazooClient, claim_path: str) -> None:
    """Give a claim back (the hand-over it was for did not happen)."""
    with contextlib.suppress(NoNodeError):
        client.delete(claim_path)
