"""Who leads a connector fleet, read from ZooKeeper's ``/leader`` (not the connectors' word).

    fleet.leader()                                  # ("c2", 7), or None: nobody leads
    leader = fleet.wait_for_leader(timeout=30)      # once a connector holds the lease
    successor = fleet.wait_for_leader(exclude=leader, above_epoch=7)

:class:`FleetLeadership` is the part of
:class:`chaos.launch.connector.ConnectorFleet` that asks ZooKeeper: it needs
only the fleet's ``zk_hosts`` and ``cluster``, so a connector that says it
leads without holding the lease is never believed.
"""

from __future__ import annotations

import contextlib
from typing import Any

from chaos.launch._process import wait_for
from election import open_client, read_cluster_status

__all__ = ["FleetLeadership"]


class FleetLeadership:
    """``leader`` and ``wait_for_leader`` of the fleet on ``zk_hosts``, cluster ``cluster``."""

    zk_hosts: str
    cluster: str

    def leader(self, client: Any = None) -> tuple[str, int] | None:
        """``(name, epoch)`` of ``/pfxha/<cluster>/leader``, or None (``client``: a KazooClient)."""
        status = read_cluster_status(client if client is not None else self.zk_hosts, self.cluster)
        if status.leader is None:
            return None
        return status.leader.name, status.leader.epoch

    def wait_for_leader(
        self,
        timeout: float = 30.0,
        *,
        exclude: str | None = None,
        above_epoch: int = 0,
        client: Any = None,
    ) -> str:
        """The leader's name once one (other than ``exclude``, above an epoch) holds the lease.

        ``client``: a started KazooClient to poll with (else one is opened here).
        """
        found: list[str] = []
        with contextlib.ExitStack() as stack:
            if client is None:
                client = stack.enter_context(open_client(self.zk_hosts))

            def elected() -> bool:
                current = self.leader(client)
                if current is None or current[0] == exclude or current[1] <= above_epoch:
                    return False
                found.append(current[0])
                return True

            wait_for(elected, timeout=timeout, what="a connector leading", interval=0.02)
        return found[-1]
