"""The ZooKeeper layout of one cluster (a public contract, see docs/election.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClusterPaths"]


@dataclass(frozen=True)
class ClusterPaths:
    cluster: str
    root: str = "/pfxha"

    @property
    def base(self) -> str:
        return f"{self.root}/{self.cluster}"

    @property
    def members(self) -> str:
        return f"{self.base}/members"

    def member(self, name: str) -> str:
        return f"{self.members}/{name}"

    @property
    def leader(self) -> str:
        return f"{self.base}/leader"

    @property
    def epoch(self) -> str:
        return f"{self.base}/epoch"

    @property
    def election(self) -> str:
        return f"{self.base}/election"

    def candidate(self, node: str) -> str:
        return f"{self.election}/{node}"

    @property
    def switchover(self) -> str:
        return f"{self.base}/switchover"

    @property
    def pause(self) -> str:
        return f"{self.base}/pause"

    @property
    def history(self) -> str:
        return f"{self.base}/history"

    def history_entry(self, node: str) -> str:
        return f"{self.history}/{node}"

    @property
    def yields(self) -> str:
        """One sequential node per voluntary hand-over (the cluster-wide yield budget)."""
        return f"{self.base}/yields"
