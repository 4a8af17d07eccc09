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

``ca-node-loss`` and ``ca-node-stall`` need the CAs on OpenBao (``pfxha drill
--ca openbao``) and join ``all`` there. ``ca-node-stall`` hangs the active node
rather than kill it: its connections stay open and silent, so a client that
keeps asking the node it last reached waits out every call; recovery is the
primary CA signing again (``recover_at_primary``) while the node still hangs.

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

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from chaos.drill import faults as f
from chaos.drill.faults import DOUBT_WAIT_S, FaultTarget
from chaos.nemesis import Fault

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


Kind = Literal["leader", "ca", "zk", "blocking", "blip", "cascade", "ca-node"]

# Held faults: applied for ``hold_s``, then healed; recovery is measured from the heal.
HELD: frozenset[str] = frozenset({"blocking", "blip"})

# How long ``cut-blip`` cuts the leader from the service (below the yield threshold).
BLIP_S = 1.0


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
    # ca-node: recovery is a certificate from the primary CA itself (its cluster
    # must serve again while the fault lasts), not from whichever CA serves first.
    recover_at_primary: bool = False

    @property
    def hits_primary_ca(self) -> bool:
        """Its fault is at the primary CA (a stall too, whatever the kind): a round
        starts once the leader issues there again after an earlier failover."""
        return self.kind in ("ca", "ca-node") or self.late_check


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("connector-down", "leader", "SIGKILL of the active connector", f.kill_connector),
        Scenario("ca-down", "ca", "primary issuing CA killed; the secondary serves", f.ca_down,
                 leader_change=False),
        Scenario("both-down", "leader", "active connector and primary CA killed together",
                 f.both_down),
        Scenario("ca-stall", "ca",
                 "primary CA hung (SIGSTOP): the secondary serves; its late certificates "
                 "revoked", f.ca_stall, leader_change=False, late_check=True),
        Scenario("ca-stall-kill", "leader",
                 "primary CA hung, the leader killed once it gave a key up: its "
                 "successor revokes the late certificates", f.ca_stall_kill, late_check=True),
        Scenario("graceful", "leader", "SIGTERM of the active connector", f.terminate_connector),
        Scenario("switchover", "leader", "pfxha switchover: planned handover", f.switchover),
        Scenario("pause", "leader", "SIGSTOP the leader past its session, then SIGCONT",
                 f.pause_connector),
        Scenario("partition", "leader", "the leader cut from ZooKeeper only (dropped packets)",
                 f.partition),
        Scenario("zk-node-loss", "zk", "the ZooKeeper ensemble's leader node killed",
                 f.zk_node_loss, leader_change=False),
        Scenario("zk-quorum-loss", "blocking", "two of three ZooKeeper nodes down",
                 f.zk_quorum_loss, hold_s=3.0, leader_change=False),
        Scenario("ca-all-down", "blocking", "both issuing CAs down: requests wait, none lost",
                 f.ca_all_down, hold_s=2.0, leader_change=False),
        Scenario("intruder", "zk", "callers without credentials or revoked try to take over",
                 f.intruder, leader_change=False),
        Scenario("ca-node-loss", "ca-node",
                 "the primary CA's OpenBao Raft active node killed: its cluster elects",
                 f.ca_node_loss, leader_change=False, openbao_only=True),
        Scenario("ca-node-stall", "ca-node",
                 "the primary CA's OpenBao Raft active node hung (SIGSTOP): the connectors "
                 "reach the node its cluster elects instead",
                 f.ca_node_stall, leader_change=False, openbao_only=True,
                 late_check=True, recover_at_primary=True),
        Scenario("service-cut", "leader",
                 "the leader's link to the service blackholed (ZooKeeper intact)",
                 f.service_cut, needs_links=True, max_leader_changes=1, recover_s=10.0),
        Scenario("ca-cut", "leader", "the leader's links to every CA blackholed (API and certdb)",
                 f.ca_cut, needs_links=True, max_leader_changes=1, recover_s=10.0),
        Scenario("service-down", "blocking",
                 "the service unreachable for every member: no lease may move",
                 f.service_down, hold_s=3.0, leader_change=False, needs_links=True,
                 max_leader_changes=0),
        Scenario("cut-blip", "blip",
                 f"the leader cut from the service for {BLIP_S:g} s, under the yield threshold",
                 f.service_cut, hold_s=BLIP_S, leader_change=False, needs_links=True,
                 max_leader_changes=0),
        Scenario("cascade", "cascade",
                 "the leader cut from the service; its successor cut as soon as it leads",
                 f.cascade, needs_links=True, max_leader_changes=2, recover_s=15.0),
        Scenario("host-crash", "leader",
                 "the leader's host dies: every process frozen, its link dropped (no RST)",
                 f.host_crash, hosts_only=True),
        Scenario("host-isolate", "leader",
                 "the leader's host loses every link, its ZooKeeper node included",
                 f.host_isolate, hosts_only=True),
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
