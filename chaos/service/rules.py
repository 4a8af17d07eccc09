"""Pure rules of the service: the seed's revocation table, renewal, fencing.

No I/O here; the store calls these and the unit tests pin them down::

    outcome = revocation_outcome(Event.BLOCK, Mode.HYBRID)   # Outcome(revoke=True, delete=False)
    revocation_outcome(Event.BLOCK, Mode.STANDALONE)          # None: n/a in standalone
    renewal_due(not_before, not_after, threshold_percent=20, now=now)
    fence(call_epoch=4, caller="b", highest=5, holder="a")    # FenceVerdict(ok=False, ...)
    epoch_problem(2**62)                                      # "epoch above the maximum ..."
    advance_verdict(10**6, 404, budget=65536.0, budget_at=t, now=t, policy=AdvancePolicy())
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

__all__ = [
    "MAX_EPOCH",
    "AdvancePolicy",
    "AdvanceVerdict",
    "Event",
    "FenceVerdict",
    "Mode",
    "Outcome",
    "advance_verdict",
    "epoch_problem",
    "fence",
    "renewal_due",
    "revocation_outcome",
]


class Mode(enum.StrEnum):
    HYBRID = "hybrid"
    STANDALONE = "standalone"


class Event(enum.StrEnum):
    """One row of the seed's revocation table each, plus the single-action user revoke."""

    RETIRE_USER = "retire-user"
    RETIRE_ADMIN = "retire-admin"
    BLOCK = "block"
    DELETE_DEVICE = "delete-device"
    LEAVE_GROUP = "leave-group"
    DELETE_PROFILE = "delete-profile"
    REMOVE_ASSIGNMENT = "remove-assignment"
    REVOKE_ALL_OF_USER = "revoke-all-of-user"
    RENEWAL = "renewal"


@dataclass(frozen=True)
class Outcome:
    revoke: bool
    delete: bool  # the device deletes its copy
    reason: str  # RFC 5280 CRLReason name, as CFSSL's revoke endpoint spells it


_DELETED_AND_REVOKED = {
    Event.RETIRE_USER: "cessationOfOperation",
    Event.RETIRE_ADMIN: "cessationOfOperation",
    Event.DELETE_DEVICE: "cessationOfOperation",
    Event.LEAVE_GROUP: "affiliationChanged",
    Event.DELETE_PROFILE: "cessationOfOperation",
    Event.REMOVE_ASSIGNMENT: "privilegeWithdrawn",
    Event.REVOKE_ALL_OF_USER: "privilegeWithdrawn",
}
# The seed's "N/A" cells: in standalone mode the service has no such action.
_NOT_IN_STANDALONE = {Event.BLOCK, Event.DELETE_DEVICE}


def revocation_outcome(event: Event, mode: Mode) -> Outcome | None:
    """What happens to a device's certificate on ``event``; None where the table says n/a."""
    if mode is Mode.STANDALONE and event in _NOT_IN_STANDALONE:
        return None
    if event is Event.BLOCK:
        return Outcome(revoke=True, delete=False, reason="privilegeWithdrawn")
    if event is Event.RENEWAL:
        return Outcome(revoke=True, delete=True, reason="superseded")
    return Outcome(revoke=True, delete=True, reason=_DELETED_AND_REVOKED[event])


def renewal_due(
    not_before: dt.datetime, not_after: dt.datetime, threshold_percent: int, now: dt.datetime
) -> bool:
    """True once the remaining lifetime is at most ``threshold_percent`` of the whole.

    Intune's "renewal threshold (%)" is remaining lifetime: 20 means renew when
    80 % of the validity has passed.
    """
    lifetime = (not_after - not_before).total_seconds()
    if lifetime <= 0:
        return True
    remaining = (not_after - now).total_seconds()
    return remaining <= lifetime * threshold_percent / 100.0


@dataclass(frozen=True)
class FenceVerdict:
    ok: bool
    reason: str
    stale: bool = False  # a 409: counted as a stale-epoch rejection
    not_registered: bool = False


def fence(call_epoch: int, caller: str, highest: int, holder: str | None) -> FenceVerdict:
    """May ``caller`` act with ``call_epoch`` when ``holder`` registered ``highest``?"""
    if call_epoch < highest:
        return FenceVerdict(
            False, f"stale epoch {call_epoch}: the highest epoch seen is {highest}", stale=True
        )
    if call_epoch > highest or holder is None:
        return FenceVerdict(
            False, f"epoch {call_epoch} is not registered; register first", not_registered=True
        )
    if caller != holder:
        return FenceVerdict(
            False, f"epoch {call_epoch} belongs to connector {holder!r}, not {caller!r}", stale=True
        )
    return FenceVerdict(True, "current epoch")


def register_verdict(
    call_epoch: int, caller: str, highest: int, holder: str | None
) -> FenceVerdict:
    """Registration takes a new highest epoch, or repeats the current one by its holder."""
    if call_epoch > highest:
        return FenceVerdict(True, f"epoch {call_epoch} is the new highest")
    if call_epoch == highest and holder == caller:
        return FenceVerdict(True, "re-registration of the current epoch")
    if call_epoch == highest:
        return FenceVerdict(
            False, f"epoch {call_epoch} is already registered by {holder!r}", stale=True
        )
    return FenceVerdict(
        False, f"stale epoch {call_epoch}: the highest epoch seen is {highest}", stale=True
    )


# -- epoch bounds and the advance budget ------------------------------------------

# The largest epoch the service accepts, anywhere. ZooKeeper's counter takes one
# value per leadership and is written with a versioned compare-and-set, so a
# real cluster cannot pass 2**31 (the znode version is an int32); 2**48 leaves
# 131072 times that, stays exact in every IEEE double (JSON readers in other
# languages, the Prometheus gauge) and far from SQLite's 2**63.
MAX_EPOCH = 2**48


def epoch_problem(epoch: object) -> str | None:
    """Why ``epoch`` is no acceptable epoch (None: it is one).

    Defence in depth under the schema: a bool, a float (also an integral or a
    non-finite one), a negative number or one above :data:`MAX_EPOCH` is refused.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return f"an epoch is an integer, not {type(epoch).__name__}"
    if epoch < 0:
        return "an epoch is never negative"
    if epoch > MAX_EPOCH:
        return f"epoch above the maximum {MAX_EPOCH} (2**48): refused as forged"
    return None


@dataclass(frozen=True)
class AdvancePolicy:
    """How fast registrations may move the highest epoch up (a token bucket).

    A register of epoch ``e`` above the highest seen ``h`` spends ``e - h`` from
    a budget of at most ``capacity`` that refills ``refill_per_s`` per second.
    ZooKeeper hands out one epoch per leadership, so the budget is the number of
    leaderships the service lets pass unseen (e.g. while it was unreachable).
    """

    capacity: int = 65_536
    refill_per_s: float = 1.0


@dataclass(frozen=True)
class AdvanceVerdict:
    ok: bool
    reason: str
    budget: float  # what is left after this register (unchanged when refused)
    retry_after_s: float | None = None  # None: waiting does not help, an admin must accept


def advance_verdict(
    epoch: int,
    highest: int,
    *,
    budget: float,
    budget_at: float,
    now: float,
    policy: AdvancePolicy,
    admin_accepted: bool = False,
) -> AdvanceVerdict:
    """May a register move the highest epoch from ``highest`` to ``epoch`` now?

    ``budget`` was left at time ``budget_at``; it refills up to the capacity (a
    clock that went backwards refills nothing). An epoch an admin accepted for
    this connector passes whatever the budget and spends none of it.
    """
    available = min(
        float(policy.capacity), budget + max(0.0, now - budget_at) * policy.refill_per_s
    )
    jump = epoch - highest
    if jump <= 0:
        return AdvanceVerdict(True, "the highest epoch does not move", available)
    if jump <= available:
        return AdvanceVerdict(True, f"advance of {jump} within the budget", available - jump)
    if admin_accepted:
        return AdvanceVerdict(True, f"advance of {jump} accepted by an admin", available)
    retry = None
    if jump <= policy.capacity:
        retry = (jump - available) / policy.refill_per_s
    return AdvanceVerdict(
        False,
        f"epoch {epoch} is {jump} above the highest seen {highest}; at most "
        f"{int(available)} accepted now (budget {policy.capacity}, refilling "
        f"{policy.refill_per_s:g}/s): suspected forgery; an admin may accept it "
        "(POST /api/v1/admin/connectors/{name}/accept-epoch)",
        available,
        retry,
    )
