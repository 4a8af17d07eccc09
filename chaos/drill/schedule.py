"""The random nemesis's plan: which fault when, for how long, from a seed alone.

    kinds = available_kinds(links=True, partition=partition_unavailable() is None)
    plan = make_schedule(seed=7, duration_s=120, kinds=kinds, connectors=3)
    print(format_schedule(plan))          # the same seed prints the same plan
    plan.faults[0]                         # ScheduledFault(index=1, kind="pause", at_s=3.1, ...)

Pure: one :class:`random.Random` seeded with ``seed`` makes every choice
(start times, kinds, holds, latency spikes), so a plan is reproducible from
its seed and tested without a lab. What the plan cannot know, who leads when
a fault starts, the runner (:mod:`chaos.drill.random_run`) decides and records.

The cluster must stay able to recover (Jepsen's nemesis is cruel, not
hopeless), so the plan keeps to bounds at every instant:

- at most ``max_concurrent`` faults at once;
- per resource a limit: connector faults at most ``connectors - 1`` (one member
  is always untouched), one CA fault (``ca-down``, ``ca-all-down``,
  ``ca-stall``, and with ``--ca openbao`` ``ca-node-loss`` or
  ``ca-node-stall``), one
  ZooKeeper fault (node or quorum loss: never all three nodes), one link
  fault (a link fault restores the state it saw, so two on the same link
  healed out of order would leave it cut);
- every fault heals by ``duration_s``: the runner heals all, then checks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "KINDS",
    "FaultKind",
    "Recovery",
    "Schedule",
    "ScheduledFault",
    "available_kinds",
    "format_schedule",
    "limits_for",
    "make_schedule",
]

Resource = Literal["connector", "ca", "zk", "link"]

# What "recovered" means for a fault (None: no recovery is defined):
# new-epoch: a certificate under a newer epoch (the target led when it started);
# handover-or-heal: the same, or, when the cut healed first, any certificate after
# the heal (a gray cut may end before the leader hands over, and then the leader
# resumes: the next epoch change can come from another fault much later);
# other-ca: a certificate from the secondary CA; after-fault: any certificate
# after the start; after-heal: any certificate after the heal (nobody can act before).
Recovery = Literal["new-epoch", "handover-or-heal", "other-ca", "after-fault", "after-heal"]


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault the random nemesis may pick."""

    name: str
    summary: str
    uses: tuple[Resource, ...]
    recovery: Recovery | None
    # Shorter holds would not be the fault (a pause must outlive the session).
    min_hold_s: float = 1.0
    # Whether it picks a connector (the leader, or a member not already faulted).
    targets_connector: bool = False
    needs_links: bool = False
    needs_partition: bool = False
    # The primary CA on an OpenBao Raft cluster (``--ca openbao``): a node of it.
    needs_ca_cluster: bool = False


KINDS: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("kill", "SIGKILL a connector, restarted at heal", ("connector",), "new-epoch",
                  targets_connector=True),
        FaultKind("sigterm", "SIGTERM a connector, restarted at heal", ("connector",),
                  "new-epoch", targets_connector=True),
        FaultKind("pause", "SIGSTOP a connector past its session, SIGCONT at heal",
                  ("connector",), "new-epoch", min_hold_s=2.0, targets_connector=True),
        FaultKind("partition", "a connector cut from ZooKeeper (dropped packets)",
                  ("connector",), "new-epoch", min_hold_s=2.0, targets_connector=True,
                  needs_partition=True),
        FaultKind("service-cut", "a connector's service link blackholed",
                  ("connector", "link"), "handover-or-heal", targets_connector=True,
                  needs_links=True),
        FaultKind("ca-cut", "a connector's links to every CA blackholed",
                  ("connector", "link"), "handover-or-heal", targets_connector=True,
                  needs_links=True),
        FaultKind("latency", "a latency spike on a connector's service link",
                  ("connector", "link"), None, targets_connector=True, needs_links=True),
        FaultKind("service-down", "every member cut from the service", ("link",), "after-heal",
                  needs_links=True),
        FaultKind("ca-down", "the primary CA killed", ("ca",), "other-ca"),
        FaultKind("ca-all-down", "both issuing CAs killed", ("ca",), "after-heal"),
        FaultKind("ca-stall", "the primary CA hung (SIGSTOP), SIGCONT at heal: it signs "
                  "what it held, late", ("ca",), "other-ca"),
        FaultKind("zk-node-loss", "the ZooKeeper ensemble's leader node killed", ("zk",),
                  "after-fault"),
        FaultKind("zk-quorum-loss", "two of three ZooKeeper nodes killed", ("zk",),
                  "after-heal"),
        # Last, so that a plan without them (CFSSL) draws as it always did from a seed.
        FaultKind("ca-node-loss", "the primary CA cluster's active node killed, started "
                  "again at heal", ("ca",), "after-fault", needs_ca_cluster=True),
        FaultKind("ca-node-stall", "the primary CA cluster's active node hung (SIGSTOP); "
                  "at heal SIGCONT, 2 s, restart", ("ca",), "after-fault",
                  needs_ca_cluster=True),
    )
}  # fmt: skip

# Latency spikes: a round trip drawn from this range (seconds).
SPIKE_RTT_S = (0.1, 0.6)


@dataclass(frozen=True)
class ScheduledFault:
    """Fault number ``index`` of kind ``kind`` from ``at_s`` (since the start) for ``hold_s``."""

    index: int
    kind: str
    at_s: float
    hold_s: float
    # The latency spike's round trip (kind "latency" only).
    rtt_s: float | None = None

    @property
    def end_s(self) -> float:
        return round(self.at_s + self.hold_s, 3)


@dataclass(frozen=True)
class Schedule:
    seed: int
    duration_s: float
    max_concurrent: int
    limits: dict[str, int]
    faults: tuple[ScheduledFault, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration_s": self.duration_s,
            "max_concurrent": self.max_concurrent,
            "limits": dict(self.limits),
            "faults": [{**asdict(f), "end_s": f.end_s} for f in self.faults],
        }

    def concurrent_at(self, t: float) -> list[ScheduledFault]:
        return [f for f in self.faults if f.at_s <= t < f.end_s]


def available_kinds(*, links: bool, partition: bool, ca_cluster: bool = False) -> list[FaultKind]:
    """The kinds this lab can make: link faults need the links, partitions iptables,
    node faults of the CA a Raft cluster (``ca_cluster``: the primary CA on OpenBao)."""
    return [
        k
        for k in KINDS.values()
        if (links or not k.needs_links)
        and (partition or not k.needs_partition)
        and (ca_cluster or not k.needs_ca_cluster)
    ]


def limits_for(connectors: int) -> dict[str, int]:
    """Per resource, how many faults may hold it at once (see the module docstring)."""
    if connectors < 2:
        raise ValueError(f"the random nemesis needs 2 connectors or more, got {connectors}")
    return {"connector": connectors - 1, "ca": 1, "zk": 1, "link": 1}


def make_schedule(
    *,
    seed: int,
    duration_s: float,
    kinds: Sequence[FaultKind],
    connectors: int = 3,
    max_concurrent: int = 3,
    gap_s: tuple[float, float] = (0.5, 8.0),
    hold_s: tuple[float, float] = (1.0, 8.0),
) -> Schedule:
    """Faults at random times with random overlap, within the bounds, all healed by the end.

    Starts are ``gap_s`` apart (uniform); each fault's kind is drawn from those
    whose resources are free at its start, its hold from ``hold_s`` (at least
    the kind's ``min_hold_s``), cut to end by ``duration_s``.
    """
    if duration_s <= 0:
        raise ValueError(f"--duration must be more than 0 s, got {duration_s}")
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be 1 or more, got {max_concurrent}")
    if not kinds:
        raise ValueError("no fault kinds to choose from")
    if not 0 < gap_s[0] <= gap_s[1] or not 0 < hold_s[0] <= hold_s[1]:
        raise ValueError(f"bad ranges: gap {gap_s}, hold {hold_s}")
    limits = limits_for(connectors)
    rng = random.Random(seed)
    faults: list[ScheduledFault] = []
    t = round(rng.uniform(*gap_s), 2)
    while t < duration_s:
        active = [f for f in faults if f.end_s > t]
        held: dict[str, int] = {}
        for f in active:
            for resource in KINDS[f.kind].uses:
                held[resource] = held.get(resource, 0) + 1
        free = [k for k in kinds if all(held.get(r, 0) < limits[r] for r in k.uses)]
        if len(active) >= max_concurrent or not free:
            t = min(f.end_s for f in active)  # wait for the next heal
            continue
        kind = free[rng.randrange(len(free))]
        hold = min(round(rng.uniform(max(hold_s[0], kind.min_hold_s), hold_s[1]), 2),
                   round(duration_s - t, 2))  # fmt: skip
        rtt = round(rng.uniform(*SPIKE_RTT_S), 3) if kind.name == "latency" else None
        if hold >= kind.min_hold_s:
            faults.append(ScheduledFault(len(faults) + 1, kind.name, t, hold, rtt))
        t = round(t + rng.uniform(*gap_s), 2)
    return Schedule(seed, duration_s, max_concurrent, limits, tuple(faults))


def format_schedule(plan: Schedule) -> str:
    """The plan as the drill prints it before it runs."""
    lines = [
        f"random nemesis: seed {plan.seed}, {plan.duration_s:g} s, {len(plan.faults)} faults, "
        f"at most {plan.max_concurrent} at once (limits: "
        + ", ".join(f"{r} {n}" for r, n in plan.limits.items())
        + ")"
    ]
    for f in plan.faults:
        extra = f" (round trip {f.rtt_s:g} s)" if f.rtt_s is not None else ""
        lines.append(
            f"  #{f.index:<3} {f.at_s:7.2f} s -> {f.end_s:7.2f} s  {f.kind}{extra}: "
            f"{KINDS[f.kind].summary}"
        )
    return "\n".join(lines)
