"""How often leadership moved, from the observer's ``leader`` events, and whether it may have.

    changes = count_leader_changes(events, baseline_epoch=7)   # new epochs after epoch 7
    violations = check_leader_changes(changes, limit=0, what="service-down")

A leadership change is a new leader epoch in ZooKeeper's ``/leader`` (the
observer records every write): a member taking over, or the same member
winning again after losing its lease, each counts once. Gaps (nobody leads)
do not count; the epoch that follows them does. Controls such as
``service-down`` (a dependency down for everyone) and ``cut-blip`` (a cut
shorter than the yield threshold) must move no lease: their limit is 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from chaos.checkers.ops import LEADER, OBSERVER
from chaos.history import Event

__all__ = ["check_leader_changes", "count_leader_changes"]


def count_leader_changes(events: Iterable[Event], *, baseline_epoch: int | None) -> int:
    """New leader epochs in ``events`` after ``baseline_epoch`` (None: the first one seen)."""
    last = baseline_epoch
    changes = 0
    for event in events:
        if event.process != OBSERVER or event.f != LEADER or event.type != "info":
            continue
        value = event.value if isinstance(event.value, dict) else {}
        name, epoch = value.get("name"), value.get("epoch")
        if not name or not isinstance(epoch, int):
            continue
        if last is not None and epoch != last:
            changes += 1
        last = epoch
    return changes


def check_leader_changes(changes: int, *, limit: int | None, what: str) -> list[str]:
    """A violation when ``changes`` exceeds ``limit`` (None: any number is fine)."""
    if limit is None or changes <= limit:
        return []
    if limit == 0:
        return [f"{what}: leadership changed {changes} time(s); this fault must move no lease"]
    return [
        f"{what}: leadership changed {changes} times, more than the {limit} the fault "
        "calls for (ping-pong)"
    ]
