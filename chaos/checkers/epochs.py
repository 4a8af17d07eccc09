"""Fencing and single-leadership invariants.

- No action accepted from a stale epoch: in the service's acceptance order,
  an action's epoch is never lower than one already accepted (the fencing
  token works like a monotonic version at the resource).
- At most one active connector at any observed moment, and exactly one once
  a round has healed while ZooKeeper has quorum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chaos.checkers.model import AcceptedAction
from chaos.checkers.ops import CONNECTORS, OBSERVER
from chaos.history import Event

__all__ = ["check_single_active", "check_stale_epochs"]


def check_stale_epochs(accepted: Sequence[AcceptedAction]) -> list[str]:
    violations: list[str] = []
    highest: AcceptedAction | None = None
    for action in sorted(accepted, key=lambda a: a.seq):
        if highest is not None and action.epoch < highest.epoch:
            violations.append(
                f"stale epoch accepted: {action.kind} #{action.seq} from {action.connector} "
                f"with epoch {action.epoch} after epoch {highest.epoch} "
                f"({highest.kind} #{highest.seq} from {highest.connector})"
            )
        if highest is None or action.epoch > highest.epoch:
            highest = action
    return violations


def check_single_active(events: Iterable[Event]) -> list[str]:
    violations: list[str] = []
    for event in events:
        if event.process != OBSERVER or event.f != CONNECTORS or event.type != "info":
            continue
        value = event.value if isinstance(event.value, dict) else {}
        active = list(value.get("active") or [])
        if len(active) > 1:
            violations.append(
                f"{len(active)} active connectors at t={event.time:.3f}s: {', '.join(active)}"
            )
        elif value.get("settled") and value.get("quorum", True) and len(active) != 1:
            violations.append(
                f"no active connector at t={event.time:.3f}s after the round healed "
                "with ZooKeeper quorum"
            )
    return violations
