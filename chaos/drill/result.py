"""Drill results: per-round measurements, per-scenario summaries, the ``--json`` contract.

The contract (tools depend on it; documented in docs/chaos.md)::

    {"scenarios": {NAME: {"rounds": int,
                          "failover_s": {"p50": float, "p99": float, "max": float},
                          "violations": [str, ...],
                          "requests": {"created": int, "delivered": int,
                                       "failed": int, "lost": int},
                          "duplicates": int,
                          "stale_epoch_rejected": int,
                          "leader_changes": int}},
     "certificates": {"device": {"delivered": int},
                      "user": {"delivered": int, "users": int, "devices": int,
                               "rollovers": int}},
     "ok": bool}

``leader_changes`` (added with the gray-failure scenarios, backward compatible):
new leader epochs the observer saw in ZooKeeper during the scenario.

Scenario ``random`` (the random nemesis) adds ``seed``, ``faults_planned`` and
``faults_injected`` (faults its schedule planned, and those injected: a fault
whose target was already faulted is skipped); its ``rounds`` are its faults and
``failover_s`` covers the faults with a recovery defined.

Scenarios that stall a CA (``ca-stall``, ``ca-stall-kill``) add ``late``:
``{"keys_in_doubt": int, "certificates": int, "revoked": int}``: keys sent to
the stalled CA and then given up on (or delivered ``uncertain`` from the other
CA), the late certificates the CA recorded for them once it resumed, and how
many of those were revoked (a late certificate still valid is a violation).

``certificates`` says what the drill exercised, over the whole run (the
service DB at the end): device-scoped certificates delivered; user-scoped
ones delivered, for how many users, on how many devices, and how many
rollovers (a lost device's shared certificate re-issued).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RoundResult",
    "ScenarioResult",
    "contract",
    "load_rounds",
    "percentile",
    "write_contract",
    "write_rounds",
]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0.0 for no values.

    Nearest rank never invents a value nobody measured: with 20 rounds the
    p99 is the worst round, as it should be.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class RoundResult:
    """One fault and its recovery. Times are seconds; ``*_at`` are history times."""

    scenario: str
    round: int
    fault_at: float
    heal_at: float | None = None
    old_leader: str | None = None
    old_epoch: int | None = None
    new_leader: str | None = None
    new_epoch: int | None = None
    new_leader_s: float | None = None
    registered_s: float | None = None
    first_delivery_s: float | None = None
    other_ca_s: float | None = None
    # ca-node-loss: fault -> the CA's cluster has a new active node (its own recovery).
    ca_elected_s: float | None = None
    failover_s: float | None = None
    delayed_requests: int = 0
    worst_latency_s: float | None = None
    # New leader epochs from the fault to the end of the round (settled).
    leader_changes: int = 0
    violations: list[str] = field(default_factory=list)
    # Facts about the round that are not invariant violations.
    notes: list[str] = field(default_factory=list)
    # Attack scenarios (intruder): attack -> "refused" | "survived".
    attacks: dict[str, str] = field(default_factory=dict)
    # The random nemesis: this round's fault kind and target ("pause c2").
    fault: str = ""
    # Scenarios that stall a CA (late_check): keys in doubt since the fault (given
    # up on, or delivered uncertain), the late certificates CAs recorded for them,
    # and how many of those were revoked (all of them, or the round has a violation).
    keys_in_doubt: int | None = None
    late_certificates: int | None = None
    late_revoked: int | None = None


@dataclass
class ScenarioResult:
    name: str
    rounds: list[RoundResult] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    created: int = 0
    delivered: int = 0
    failed: int = 0
    lost: int = 0
    duplicates: int = 0
    stale_epoch_rejected: int = 0
    leader_changes: int = 0
    # The random nemesis (scenario ``random``): its seed, faults planned and injected.
    seed: int | None = None
    faults_planned: int | None = None
    faults_injected: int | None = None

    @property
    def failovers(self) -> list[float]:
        return [r.failover_s for r in self.rounds if r.failover_s is not None]

    def failover_cells(self) -> tuple[str, str, str]:
        """p50, p99 and max for a table, seconds to 3 places; "-" when no round recovered
        (the contract's 0.0 then would read as an instant failover)."""
        values = self.failovers
        if not values:
            return ("-", "-", "-")
        return (
            f"{percentile(values, 50):.3f}",
            f"{percentile(values, 99):.3f}",
            f"{max(values):.3f}",
        )

    def all_violations(self) -> list[str]:
        found = [f"round {r.round}: {v}" for r in self.rounds for v in r.violations]
        return found + list(self.violations)

    def to_contract(self) -> dict[str, Any]:
        values = self.failovers
        return {
            "rounds": len(self.rounds),
            "failover_s": {
                "p50": round(percentile(values, 50), 4),
                "p99": round(percentile(values, 99), 4),
                "max": round(max(values, default=0.0), 4),
            },
            "violations": self.all_violations(),
            "requests": {
                "created": self.created,
                "delivered": self.delivered,
                "failed": self.failed,
                "lost": self.lost,
            },
            "duplicates": self.duplicates,
            "stale_epoch_rejected": self.stale_epoch_rejected,
            "leader_changes": self.leader_changes,
            **({"attacks": self.attacks()} if any(r.attacks for r in self.rounds) else {}),
            **({"late": self.late()} if self.late() is not None else {}),
            **(
                {
                    "seed": self.seed,
                    "faults_planned": self.faults_planned,
                    "faults_injected": self.faults_injected,
                }
                if self.faults_injected is not None
                else {}
            ),
        }

    def late(self) -> dict[str, int] | None:
        """Over the rounds that checked them: keys in doubt, late certificates
        found, and revoked (None: no round checked)."""
        checked = [r for r in self.rounds if r.keys_in_doubt is not None]
        if not checked:
            return None
        return {
            "keys_in_doubt": sum(r.keys_in_doubt or 0 for r in checked),
            "certificates": sum(r.late_certificates or 0 for r in checked),
            "revoked": sum(r.late_revoked or 0 for r in checked),
        }

    def attacks(self) -> dict[str, str]:
        """Attack -> its outcome over every round ("refused", "survived"; the worst wins)."""
        merged: dict[str, str] = {}
        for r in self.rounds:
            for attack, outcome in r.attacks.items():
                if merged.get(attack) in (None, "refused", "survived"):
                    merged[attack] = outcome
        return dict(sorted(merged.items()))


def contract(
    scenarios: Sequence[ScenarioResult],
    *,
    topology: str = "single-host",
    certificates: dict[str, dict[str, int]] | None = None,
    ca: str = "cfssl",
) -> dict[str, Any]:
    """The ``--json`` contract; ``topology`` is ``"hosts"`` or ``"single-host"``;
    ``ca`` the CAs' vendor (``cfssl``, ``openbao``, ``mixed``)."""
    body = {s.name: s.to_contract() for s in scenarios}
    return {
        "scenarios": body,
        "certificates": certificates
        or {"device": {"delivered": 0}, "user": dict.fromkeys(USER_COUNTS, 0)},
        "ok": all(not s["violations"] for s in body.values()),
        "topology": topology,
        "ca": ca,
    }


USER_COUNTS = ("delivered", "users", "devices", "rollovers")


def write_contract(
    scenarios: Sequence[ScenarioResult],
    path: Path,
    *,
    topology: str = "single-host",
    certificates: dict[str, dict[str, int]] | None = None,
    ca: str = "cfssl",
) -> dict[str, Any]:
    data = contract(scenarios, topology=topology, certificates=certificates, ca=ca)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def write_rounds(scenarios: Sequence[ScenarioResult], path: Path) -> None:
    """Every round's measurements, for the report and for later analysis."""
    data = {s.name: [asdict(r) for r in s.rounds] for s in scenarios}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_rounds(path: Path) -> dict[str, list[RoundResult]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: [RoundResult(**r) for r in rounds] for name, rounds in raw.items()}
