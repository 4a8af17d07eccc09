"""No request lost: each one ends delivered (or installed), or failed with a reason.

A request is *lost* when the history saw it created but the service does not
know it, or when, after the drill drained, it sits in a non-final state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chaos.checkers.model import RequestRecord
from chaos.checkers.ops import ENROLL
from chaos.history import Event

__all__ = [
    "DELIVERED_STATES",
    "WITHDRAWN_STATES",
    "RequestCounts",
    "check_lost_requests",
    "count_requests",
    "created_in_history",
]

DELIVERED_STATES = frozenset({"delivered", "installed"})
# Final states that are not deliveries but are not losses either: the admin
# withdrew the request (device deleted, assignment removed) before delivery.
# "escrowed": a user-scoped certificate held for the user's next device.
WITHDRAWN_STATES = frozenset(
    {"cancelled", "canceled", "revoked", "withdrawn", "superseded", "escrowed"}
)


@dataclass(frozen=True)
class RequestCounts:
    created: int
    delivered: int
    failed: int
    lost: int


def created_in_history(events: Iterable[Event]) -> set[str]:
    created: set[str] = set()
    for event in events:
        if event.f == ENROLL and event.type == "ok" and isinstance(event.value, dict):
            created.update(str(r) for r in event.value.get("requests") or [])
    return created


def check_lost_requests(events: Iterable[Event], requests: Sequence[RequestRecord]) -> list[str]:
    by_id = {r.id: r for r in requests}
    problems: list[str] = []
    for request_id in sorted(created_in_history(events) - by_id.keys()):
        problems.append(f"lost request {request_id}: created per history, unknown to the service")
    for request in sorted(requests, key=lambda r: r.id):
        if request.state in DELIVERED_STATES or request.state in WITHDRAWN_STATES:
            continue
        if request.state == "failed":
            if not (request.reason or "").strip():
                problems.append(f"request {request.id} failed without a visible reason")
            continue
        problems.append(
            f"lost request {request.id} (device {request.device}): still {request.state!r} "
            "after the drill drained"
        )
    return problems


def count_requests(events: Iterable[Event], requests: Sequence[RequestRecord]) -> RequestCounts:
    event_list = list(events)
    known = {r.id for r in requests}
    missing = created_in_history(event_list) - known
    delivered = sum(1 for r in requests if r.state in DELIVERED_STATES)
    failed = sum(1 for r in requests if r.state == "failed")
    lost = len(missing) + sum(
        1
        for r in requests
        if r.state not in DELIVERED_STATES
        and r.state not in WITHDRAWN_STATES
        and r.state != "failed"
    )
    return RequestCounts(
        created=len(known | created_in_history(event_list)),
        delivered=delivered,
        failed=failed,
        lost=lost,
    )
