"""Pure rules of the service: the seed's revocation table, renewal, fencing.

No I/O here; the store calls these and the unit tests pin them down::

    outcome = revocation_outcome(Event.BLOCK, Mode.HYBRID)   # Outcome(revoke=True, delete=False)
    revocation_outcome(Event.BLOCK, Mode.STANDALONE)          # None: n/a in standalone
    renewal_due(not_before, not_after, threshold_percent=20, now=now)
    fence(call_epoch=4, caller="b", highest=5, holder="a")    # FenceVerdict(ok=False, ...)
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

__all__ = [
    "Event",
    "FenceVerdict",
    "Mode",
    "Outcome",
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
