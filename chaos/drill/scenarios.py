"""The drill's scenarios: which fault, how to heal it, and what "recovered" means.

Each scenario builds a fresh :class:`~chaos.nemesis.Fault` per round from the
lab and the current leader. ``kind`` decides the failover measurement:

- ``leader``: fault -> first certificate accepted under a *new* epoch;
- ``ca``: fault -> first certificate issued by the *other* CA;
- ``zk``: fault -> first certificate after the fault (leadership should not
  need to change when one ZooKeeper server dies);
- ``blocking``: nobody can act until the fault heals (no quorum, no CA):
  the fault is held for ``hold_s``, and failover runs from the heal;
- ``blip``: held for ``hold_s`` like ``blocking`` (a cut shorter than the
  yield threshold: nobody should take over), failover runs from the heal;
- ``cascade``: fault -> first certificate under an epoch above the *second*
  leader's (the first successor is cut too, so a third member must work);
- ``ca-node``: fault -> first certificate after the fault, from the *same*
  CA (its cluster elects a new active node; failing over to the other CA
  before the CA's patience ran out is a violation).

Gray failures (issue 13) cut per-connector links (``needs_links``: the lab's
fault proxies, single-host only) and leave ZooKeeper intact: ``service-cut``,
``ca-cut``, ``cascade`` must move the lease to a member that can work;
``service-down`` (every member cut from the service) and ``cut-blip`` are
controls that must move none (``max_leader_changes`` 0, checked per round).

``ca-node-loss`` needs the CAs on OpenBao (``pfxha drill --ca openbao``) and
joins ``all`` there.

A hung CA (``ca-stall``, ``ca-stall-kill``) is SIGSTOPped with its sockets
open: the leader's calls in flight time out and it gives up on their keys
(requeues the requests, or has the other CA sign and says ``uncertain``); at
SIGCONT the stalled CA acts on what it was sent and records late certificates
for keys nobody holds. Each must be revoked (``late_check``): by the leader
that gave the key up, or, in ``ca-stall-kill``, by its successor, since the
leader is killed before the CA resumes (the round's clock starts at the
kill: the fault's ``struck_at``).

Host scenarios (``host-crash``, ``host-isolate``) need the hosts topology
(``pfxha drill --hosts``) and join ``all`` there; on hosts, ``partition`` cuts
the leader's *host* from its ZooKeeper peers instead of one process's packets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from chaos.nemesis import CompositeFault, Fault, ProcessFault, ZkPartition
from chaos.nemesis.link import Cascade, CutMode

__all__ = [
    "ALL",
    "ALL_HOSTS",
    "BLIP_S",
    "DOUBT_WAIT_S",
    "OPENBAO_ONLY",
    "SCENARIOS",
    "FaultTarget",
    "Scenario",
    "parse_scenarios",
    "with_blip",
]

HostFaultKind = Literal["crash", "isolate", "partition"]

Kind = Literal["leader", "ca", "zk", "blocking", "blip", "cascade", "ca-node"]

# Held faults: applied for ``hold_s``, then healed; recovery is measured from the heal.
HELD: frozenset[str] = frozenset({"blocking", "blip"})

# How long ``cut-blip`` cuts the leader from the service (below the yield threshold).
BLIP_S = 1.0

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
    def zk_leader_index(self) -> int | None: ...
    def kill_zk_node(self, index: int) -> None: ...
    def start_zk_nodes(self, indices: list[int]) -> None: ...
    def zk_client_ports(self) -> list[int]: ...
    def switchover(self) -> None: ...


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    summary: str
    build: Callable[[FaultTarget, str], Fault]
    hold_s: float = 0.0
    # Whether the leader is expected to change (the measured "new leader").
    leader_change: bool = True
    # Only on the hosts topology (each part its own network namespace).
    hosts_only: bool = False
    # Only with the primary CA on OpenBao (a Raft cluster to lose a node of).
    openbao_only: bool = False
    # Cuts per-connector links (fault proxies): single-host lab with links only.
    needs_links: bool = False
    # Leadership changes a round may show (None: any); above it is a violation.
    max_leader_changes: int | None = None
    # How long to wait for recovery (None: the drill's recover timeout).
    recover_s: float | None = None
    # The fault makes the leader give keys up that a CA may still sign: every late
    # certificate for them must be revoked by the round's end (chaos.drill._late_check).
    late_check: bool = False


def _stop_connector(
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


def _kill_connector(lab: FaultTarget, leader: str) -> Fault:
    return _stop_connector(lab, leader, "SIGKILL", lab.kill_connector)


def _terminate_connector(lab: FaultTarget, leader: str) -> Fault:
    return _stop_connector(lab, leader, "SIGTERM", lab.terminate_connector)


def _pause_connector(lab: FaultTarget, leader: str) -> Fault:
    def inject() -> dict[str, Any]:
        lab.pause_connector(leader)
        return {"connector": leader, "pid": lab.connector_pid(leader)}

    return ProcessFault(f"SIGSTOP connector {leader}", inject, lambda: lab.resume_connector(leader))


def _switchover(lab: FaultTarget, leader: str) -> Fault:
    def inject() -> dict[str, Any]:
        lab.switchover()
        return {"from": leader}

    return ProcessFault(f"switchover from {leader}", inject)


def _partition(lab: FaultTarget, leader: str) -> Fault:
    if lab.topology == "hosts":
        return lab.host_fault("partition", leader)
    pid = lab.connector_pid(leader)
    if pid is None:
        raise RuntimeError(f"connector {leader} has no pid to partition")
    cut = ZkPartition(pid, lab.zk_client_ports(), name=f"partition {leader} from ZooKeeper")
    return cut


def _host_crash(lab: FaultTarget, leader: str) -> Fault:
    return lab.host_fault("crash", leader)


def _host_isolate(lab: FaultTarget, leader: str) -> Fault:
    return lab.host_fault("isolate", leader)


def _kill_ca(lab: FaultTarget, name: str) -> Fault:
    def inject() -> dict[str, Any]:
        lab.kill_ca(name)
        return {"ca": name}

    return ProcessFault(f"SIGKILL CA {name}", inject, lambda: lab.start_ca(name))


def _ca_node_loss(lab: FaultTarget, leader: str) -> Fault:
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


def _ca_down(lab: FaultTarget, leader: str) -> Fault:
    return _kill_ca(lab, lab.primary_ca)


def _ca_stall(lab: FaultTarget, leader: str) -> Fault:
    name = lab.primary_ca

    def inject() -> dict[str, Any]:
        lab.pause_ca(name)
        return {"ca": name}

    return ProcessFault(f"SIGSTOP CA {name}", inject, lambda: lab.resume_ca(name))


def _ca_stall_kill(
    lab: FaultTarget,
    leader: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Fault:
    """Stall the primary CA; once the leader gave a key up, kill it, then resume the
    CA: the late certificates it records are the successor's to revoke."""
    stall = _ca_stall(lab, leader)

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


def _both_down(lab: FaultTarget, leader: str) -> Fault:
    return CompositeFault(
        "connector and primary CA down", [_kill_connector(lab, leader), _ca_down(lab, leader)]
    )


def _ca_all_down(lab: FaultTarget, leader: str) -> Fault:
    return CompositeFault(
        "every CA down", [_kill_ca(lab, lab.primary_ca), _kill_ca(lab, lab.secondary_ca)]
    )


def _zk_node_loss(lab: FaultTarget, leader: str) -> Fault:
    index = lab.zk_leader_index()
    if index is None:
        raise RuntimeError("ZooKeeper has no leader node to kill")

    def inject() -> dict[str, Any]:
        lab.kill_zk_node(index)
        return {"zk_node": index}

    return ProcessFault(
        f"SIGKILL ZooKeeper node {index}", inject, lambda: lab.start_zk_nodes([index])
    )


def _zk_quorum_loss(lab: FaultTarget, leader: str) -> Fault:
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


def _cut_service(lab: FaultTarget, connector: str) -> Fault:
    return lab.link_cut(connector, ("service",), "blackhole")


def _service_cut(lab: FaultTarget, leader: str) -> Fault:
    return _cut_service(lab, leader)


def _ca_cut(lab: FaultTarget, leader: str) -> Fault:
    return lab.link_cut(leader, ("ca:*",), "blackhole")


def _service_down(lab: FaultTarget, leader: str) -> Fault:
    return CompositeFault(
        "service unreachable for every member",
        [_cut_service(lab, name) for name in lab.connector_names()],
    )


def _cascade(lab: FaultTarget, leader: str) -> Fault:
    _, epoch = lab.leader_now()
    return Cascade(
        leader,
        leader=lab.leader_now,
        cut=lambda name: _cut_service(lab, name),
        above_epoch=epoch or 0,
        name=f"cascade: {leader} cut from the service, then its successor",
    )


def _intruder(lab: FaultTarget, leader: str) -> Fault:
    # Issue 8: the attacks run at inject; anything not refused fails the round.
    from chaos.intruder import intrude

    return ProcessFault(
        "intruder: rogue, revoked and anonymous callers", lambda: intrude(lab, leader)
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("connector-down", "leader", "SIGKILL of the active connector", _kill_connector),
        Scenario("ca-down", "ca", "primary issuing CA killed; the secondary serves", _ca_down,
                 leader_change=False),
        Scenario("both-down", "leader", "active connector and primary CA killed together",
                 _both_down),
        Scenario("ca-stall", "ca",
                 "primary CA hung (SIGSTOP): the secondary serves; its late certificates "
                 "revoked", _ca_stall, leader_change=False, late_check=True),
        Scenario("ca-stall-kill", "leader",
                 "primary CA hung, the leader killed once it gave a key up: its "
                 "successor revokes the late certificates", _ca_stall_kill, late_check=True),
        Scenario("graceful", "leader", "SIGTERM of the active connector", _terminate_connector),
        Scenario("switchover", "leader", "pfxha switchover: planned handover", _switchover),
        Scenario("pause", "leader", "SIGSTOP the leader past its session, then SIGCONT",
                 _pause_connector),
        Scenario("partition", "leader", "the leader cut from ZooKeeper only (dropped packets)",
                 _partition),
        Scenario("zk-node-loss", "zk", "the ZooKeeper ensemble's leader node killed",
                 _zk_node_loss, leader_change=False),
        Scenario("zk-quorum-loss", "blocking", "two of three ZooKeeper nodes down",
                 _zk_quorum_loss, hold_s=3.0, leader_change=False),
        Scenario("ca-all-down", "blocking", "both issuing CAs down: requests wait, none lost",
                 _ca_all_down, hold_s=2.0, leader_change=False),
        Scenario("intruder", "zk", "callers without credentials or revoked try to take over",
                 _intruder, leader_change=False),
        Scenario("ca-node-loss", "ca-node",
                 "the primary CA's OpenBao Raft active node killed: its cluster elects",
                 _ca_node_loss, leader_change=False, openbao_only=True),
        Scenario("service-cut", "leader",
                 "the leader's link to the service blackholed (ZooKeeper intact)",
                 _service_cut, needs_links=True, max_leader_changes=1, recover_s=10.0),
        Scenario("ca-cut", "leader", "the leader's links to every CA blackholed (API and certdb)",
                 _ca_cut, needs_links=True, max_leader_changes=1, recover_s=10.0),
        Scenario("service-down", "blocking",
                 "the service unreachable for every member: no lease may move",
                 _service_down, hold_s=3.0, leader_change=False, needs_links=True,
                 max_leader_changes=0),
        Scenario("cut-blip", "blip",
                 f"the leader cut from the service for {BLIP_S:g} s, under the yield threshold",
                 _service_cut, hold_s=BLIP_S, leader_change=False, needs_links=True,
                 max_leader_changes=0),
        Scenario("cascade", "cascade",
                 "the leader cut from the service; its successor cut as soon as it leads",
                 _cascade, needs_links=True, max_leader_changes=2, recover_s=15.0),
        Scenario("host-crash", "leader",
                 "the leader's host dies: every process frozen, its link dropped (no RST)",
                 _host_crash, hosts_only=True),
        Scenario("host-isolate", "leader",
                 "the leader's host loses every link, its ZooKeeper node included",
                 _host_isolate, hosts_only=True),
    )
}  # fmt: skip

ALL = [name for name, s in SCENARIOS.items() if not s.hosts_only and not s.openbao_only]
ALL_HOSTS = [name for name, s in SCENARIOS.items() if not s.needs_links and not s.openbao_only]
OPENBAO_ONLY = [name for name, s in SCENARIOS.items() if s.openbao_only]


def with_blip(scenario: Scenario, seconds: float) -> Scenario:
    """``cut-blip`` with a cut of ``seconds`` (other scenarios unchanged)."""
    if scenario.kind != "blip":
        return scenario
    if seconds <= 0:
        raise ValueError(f"the blip must last more than 0 s, got {seconds}")
    summary = f"the leader cut from the service for {seconds:g} s, under the yield threshold"
    return replace(scenario, hold_s=seconds, summary=summary)


def parse_scenarios(
    text: str, *, topology: str = "single-host", ca: str = "cfssl"
) -> list[Scenario]:
    """``"all"`` or a comma-separated list of names, in the order given.

    ``all`` includes the host scenarios on the hosts topology, the link
    scenarios on the single-host one and the OpenBao ones with
    ``ca="openbao"``; naming one elsewhere is an error that says how to get it.
    """
    everything = ALL_HOSTS if topology == "hosts" else ALL
    if ca == "openbao":
        everything = [*everything, *OPENBAO_ONLY]
    if text.strip() == "all":
        names = everything
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise ValueError(
            f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from: all, {', '.join(SCENARIOS)}"
        )
    needs_hosts = [n for n in names if SCENARIOS[n].hosts_only and topology != "hosts"]
    if needs_hosts:
        raise ValueError(f"{', '.join(needs_hosts)} need(s) the hosts topology: add --hosts")
    needs_links = [n for n in names if SCENARIOS[n].needs_links and topology == "hosts"]
    if needs_links:
        raise ValueError(
            f"{', '.join(needs_links)} cut(s) per-connector links, which only the "
            "single-host lab has: drop --hosts"
        )
    needs_openbao = [n for n in names if SCENARIOS[n].openbao_only and ca != "openbao"]
    if needs_openbao:
        raise ValueError(
            f"{', '.join(needs_openbao)} need(s) the primary CA on OpenBao: add --ca openbao"
        )
    return [SCENARIOS[n] for n in names]
