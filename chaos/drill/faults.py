"""How each scenario's fault is made from a lab: the builders and what they need of it.

    fault = kill_connector(lab, "c1")          # SIGKILL c1 now; restart it at heal
    fault = ca_stall_kill(lab, "c1")           # stall the primary CA, kill c1 once it gave a key up
    details = fault.inject(); ...; fault.heal()

A builder takes the lab (its :class:`FaultTarget` side) and the current leader
and returns a :class:`~chaos.nemesis.Fault`; :mod:`chaos.drill.scenarios` names
them and says how each one's recovery is measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from chaos.nemesis import CompositeFault, Fault, ProcessFault, ZkPartition
from chaos.nemesis.link import Cascade, CutMode

__all__ = [
    "DOUBT_WAIT_S",
    "RESUMED_S",
    "FaultTarget",
    "HostFaultKind",
    "both_down",
    "ca_all_down",
    "ca_cut",
    "ca_down",
    "ca_node_loss",
    "ca_node_stall",
    "ca_stall",
    "ca_stall_kill",
    "cascade",
    "cut_service",
    "host_crash",
    "host_isolate",
    "intruder",
    "kill_ca",
    "kill_connector",
    "partition",
    "pause_connector",
    "service_cut",
    "service_down",
    "stop_connector",
    "switchover",
    "terminate_connector",
    "zk_node_loss",
    "zk_quorum_loss",
]

HostFaultKind = Literal["crash", "isolate", "partition"]

# ca-node-stall: how long a resumed node serves as it is before it is restarted
RESUMED_S = 2.0

# ca-stall-kill: how long the stall may take until the leader gives up on a key
# (a CA call's deadline, at most 2 s by default, after a request reached the CA).
DOUBT_WAIT_S = 15.0


class FaultTarget(Protocol):
    """What a scenario needs from the lab (implemented by :class:`chaos.lab.lab.Lab`)."""

    primary_ca: str
    secondary_ca: str

    @property
    def topology(self) -> str: ...
    def host_fault(self, kind: HostFaultKind, connector: str) -> Fault: ...

    def connector_names(self) -> list[str]: ...
    def connector_pid(self, name: str) -> int | None: ...
    def leader_now(self) -> tuple[str | None, int | None]: ...
    def link_cut(self, connector: str, targets: tuple[str, ...], mode: CutMode) -> Fault: ...
    def kill_connector(self, name: str) -> None: ...
    def terminate_connector(self, name: str) -> None: ...
    def pause_connector(self, name: str) -> None: ...
    def resume_connector(self, name: str) -> None: ...
    def start_connector(self, name: str) -> None: ...
    def kill_ca(self, name: str) -> None: ...
    def start_ca(self, name: str) -> None: ...
    def pause_ca(self, name: str) -> None: ...
    def resume_ca(self, name: str) -> None: ...
    def keys_in_doubt(self, since_unix: float, until_unix: float) -> dict[str, str]: ...
    def ca_active_node(self, name: str) -> str: ...
    def kill_ca_node(self, name: str, node: str) -> None: ...
    def start_ca_node(self, name: str, node: str) -> None: ...
    def pause_ca_node(self, name: str, node: str) -> None: ...
    def resume_ca_node(self, name: str, node: str) -> None: ...
    def zk_leader_index(self) -> int | None: ...
    def kill_zk_node(self, index: int) -> None: ...
    def start_zk_nodes(self, indices: list[int]) -> None: ...
    def zk_client_ports(self) -> list[int]: ...
    def switchover(self) -> None: ...


def stop_connector(
    lab: FaultTarget, leader: str, signal_name: str, stop: Callable[[str], None]
) -> Fault:
    """Signal the leader's process and wait for its end aside; restart it at heal.

    The fault is the signal, so the workload's burst goes out now, not once the old
    process is reaped or has wound down: waiting for the reap held the burst back
    0.006-1.24 s at load 14-24, and that counted as failover whenever no work was
    pending when the successor took over.
    """
    ending: list[threading.Thread] = []

    def inject() -> dict[str, Any]:
        pid = lab.connector_pid(leader)
        thread = threading.Thread(
            target=stop, args=(leader,), name=f"drill-{signal_name.lower()}", daemon=True
        )
        thread.start()
        ending.append(thread)
        return {"connector": leader, "pid": pid}

    def heal() -> None:
        for thread in ending:
            thread.join(timeout=30)
        lab.start_connector(leader)

    return ProcessFault(f"{signal_name} connector {leader}", inject, heal)


def kill_connector(lab: FaultTarget, leader: str) -> Fault:
    return stop_connector(lab, leader, "SIGKILL", lab.kill_connector)


def terminate_connector(lab: FaultTarget, leader: str) -> Fault:
    return stop_connector(lab, leader, "SIGTERM", lab.terminate_connector)


def pause_connector(lab: FaultTarget, leader: str) -> Fault:
    def inject() -> dict[str, Any]:
        lab.pause_connector(leader)
        return {"connector": leader, "pid": lab.connector_pid(leader)}

    return ProcessFault(f"SIGSTOP connector {leader}", inject, lambda: lab.resume_connector(leader))


def switchover(lab: FaultTarget, leader: str) -> Fault:
    def inject() -> dict[str, Any]:
        lab.switchover()
        return {"from": leader}

    return ProcessFault(f"switchover from {leader}", inject)


def partition(lab: FaultTarget, leader: str) -> Fault:
    if lab.topology == "hosts":
        return lab.host_fault("partition", leader)
    pid = lab.connector_pid(leader)
    if pid is None:
        raise RuntimeError(f"connector {leader} has no pid to partition")
    cut = ZkPartition(pid, lab.zk_client_ports(), name=f"partition {leader} from ZooKeeper")
    return cut


def host_crash(lab: FaultTarget, leader: str) -> Fault:
    return lab.host_fault("crash", leader)


def host_isolate(lab: FaultTarget, leader: str) -> Fault:
    return lab.host_fault("isolate", leader)


def kill_ca(lab: FaultTarget, name: str) -> Fault:
    def inject() -> dict[str, Any]:
        lab.kill_ca(name)
        return {"ca": name}

    return ProcessFault(f"SIGKILL CA {name}", inject, lambda: lab.start_ca(name))


def ca_node_loss(lab: FaultTarget, leader: str) -> Fault:
    # Found now, before the fault's clock starts: inject is the kill alone.
    node = lab.ca_active_node(lab.primary_ca)

    def inject() -> dict[str, Any]:
        lab.kill_ca_node(lab.primary_ca, node)
        return {"ca": lab.primary_ca, "node": node}

    return ProcessFault(
        f"SIGKILL {node}, the Raft active node of CA {lab.primary_ca}",
        inject,
        lambda: lab.start_ca_node(lab.primary_ca, node),
    )


def ca_node_stall(
    lab: FaultTarget, leader: str, *, sleep: Callable[[float], None] = time.sleep
) -> Fault:
    """SIGSTOP the primary cluster's Raft active node: it hangs with its sockets open,
    and the rest of the cluster elects another while it does.

    Heal: SIGCONT, then restart the node after ``RESUMED_S``. OpenBao 2.7.2 resumed
    such a node still active in its own eyes, and from then on it served reads from
    a stale cache (an old CRL, certificates not revoked) even once elected again; a
    restart is the remedy (docs/pki.md, "OpenBao clusters"). Until it, the connectors
    meet the resumed node as it is.
    """
    node = lab.ca_active_node(lab.primary_ca)

    def inject() -> dict[str, Any]:
        lab.pause_ca_node(lab.primary_ca, node)
        return {"ca": lab.primary_ca, "node": node}

    def heal() -> None:
        lab.resume_ca_node(lab.primary_ca, node)
        sleep(RESUMED_S)
        lab.kill_ca_node(lab.primary_ca, node)
        lab.start_ca_node(lab.primary_ca, node)

    return ProcessFault(
        f"SIGSTOP {node}, the Raft active node of CA {lab.primary_ca}", inject, heal
    )


def ca_down(lab: FaultTarget, leader: str) -> Fault:
    return kill_ca(lab, lab.primary_ca)


def ca_stall(lab: FaultTarget, leader: str) -> Fault:
    name = lab.primary_ca

    def inject() -> dict[str, Any]:
        lab.pause_ca(name)
        return {"ca": name}

    return ProcessFault(f"SIGSTOP CA {name}", inject, lambda: lab.resume_ca(name))


def ca_stall_kill(
    lab: FaultTarget,
    leader: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Fault:
    """Stall the primary CA; once the leader gave a key up, kill it, then resume the
    CA: the late certificates it records are the successor's to revoke."""
    stall = ca_stall(lab, leader)

    def inject() -> dict[str, Any]:
        since = time.time()
        details: dict[str, Any] = {"stall": stall.inject()}
        deadline = clock() + DOUBT_WAIT_S
        while not (doubtful := lab.keys_in_doubt(since, time.time())) and clock() < deadline:
            sleep(0.05)
        details["keys_in_doubt"] = len(doubtful)
        if not doubtful:
            details["notes"] = [
                f"the leader gave no key up {DOUBT_WAIT_S:g}s into the stall; it was killed anyway"
            ]
        details["pid"] = lab.connector_pid(leader)
        # The round's clock starts here (monotonic, as the history's).
        details["struck_at"] = clock()
        # SIGKILL and reap before the CA resumes: what it records now, no process
        # that watched the key can see; only the registration hands it over.
        lab.kill_connector(leader)
        stall.heal()
        return details

    def heal() -> None:
        stall.heal()
        lab.start_connector(leader)

    return ProcessFault(
        f"CA {lab.primary_ca} stalled; SIGKILL connector {leader} once it gave a key up",
        inject,
        heal,
    )


def both_down(lab: FaultTarget, leader: str) -> Fault:
    return CompositeFault(
        "connector and primary CA down", [kill_connector(lab, leader), ca_down(lab, leader)]
    )


def ca_all_down(lab: FaultTarget, leader: str) -> Fault:
    return CompositeFault(
        "every CA down", [kill_ca(lab, lab.primary_ca), kill_ca(lab, lab.secondary_ca)]
    )


def zk_node_loss(lab: FaultTarget, leader: str) -> Fault:
    index = lab.zk_leader_index()
    if index is None:
        raise RuntimeError("ZooKeeper has no leader node to kill")

    def inject() -> dict[str, Any]:
        lab.kill_zk_node(index)
        return {"zk_node": index}

    return ProcessFault(
        f"SIGKILL ZooKeeper node {index}", inject, lambda: lab.start_zk_nodes([index])
    )


def zk_quorum_loss(lab: FaultTarget, leader: str) -> Fault:
    index = lab.zk_leader_index()
    victims = [index if index is not None else 0]
    victims.append(next(i for i in range(3) if i not in victims))

    def inject() -> dict[str, Any]:
        for victim in victims:
            lab.kill_zk_node(victim)
        return {"zk_nodes": victims}

    return ProcessFault(
        f"SIGKILL ZooKeeper nodes {victims}", inject, lambda: lab.start_zk_nodes(victims)
    )


def cut_service(lab: FaultTarget, connector: str) -> Fault:
    return lab.link_cut(connector, ("service",), "blackhole")


def service_cut(lab: FaultTarget, leader: str) -> Fault:
    return cut_service(lab, leader)


def ca_cut(lab: FaultTarget, leader: str) -> Fault:
    return lab.link_cut(leader, ("ca:*",), "blackhole")


def service_down(lab: FaultTarget, leader: str) -> Fault:
    return CompositeFault(
        "service unreachable for every member",
        [cut_service(lab, name) for name in lab.connector_names()],
    )


def cascade(lab: FaultTarget, leader: str) -> Fault:
    _, epoch = lab.leader_now()
    return Cascade(
        leader,
        leader=lab.leader_now,
        cut=lambda name: cut_service(lab, name),
        above_epoch=epoch or 0,
        name=f"cascade: {leader} cut from the service, then its successor",
    )


def intruder(lab: FaultTarget, leader: str) -> Fault:
    # Issue 8: the attacks run at inject; anything not refused fails the round.
    from chaos.intruder import intrude

    return ProcessFault(
        "intruder: rogue, revoked and anonymous callers", lambda: intrude(lab, leader)
    )
