"""Faults for the drills, each with its heal (rollback).

- :class:`ProcessFault` / :class:`CompositeFault`: kill, stop, pause a
  connector, a CA or a ZooKeeper node through the lab's launchers;
- :class:`ZkPartition`: cut one process from ZooKeeper only (dropped packets).
"""

from chaos.nemesis.base import CompositeFault, Fault, FaultError, ProcessFault
from chaos.nemesis.partition import ZkPartition, partition_unavailable, tcp_connections

__all__ = [
    "CompositeFault",
    "Fault",
    "FaultError",
    "ProcessFault",
    "ZkPartition",
    "partition_unavailable",
    "tcp_connections",
]
