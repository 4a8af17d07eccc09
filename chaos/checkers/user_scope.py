"""Invariants of user-scoped profiles: one certificate per (user, profile), on every device.

Read from the service DB (requests, the per-device copies and their reports)
and the CAs' certdbs, once the backlog drained and devices checked in::

    violations = check_user_scope(snapshot)     # snapshot.users: UserScopeState

* **one current**: at most one unrevoked current certificate per (user,
  profile), at the service and at the CA (two while a renewal waits for the
  user's devices: the renewal and the one it replaces);
* **same serial**: every active device of a targeted user holds the current
  one, installed;
* **history**: after a rollover or renewal, every active device of the user
  holds each older key as decrypt-only;
* **removed**: a user no longer targeted by the profile has every
  certificate of it revoked and nothing left on any device.

A device "holds" a copy it reported installed and was not told to delete
(or was told and has not reported the deletion yet).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from chaos.checkers.model import (
    CaCertificate,
    Snapshot,
    UserCertificate,
    UserCopy,
    UserScopeState,
)

__all__ = [
    "UserCertificate",
    "UserCopy",
    "UserScopeState",
    "check_history_copies",
    "check_one_current",
    "check_removed_users",
    "check_same_serial",
    "check_user_scope",
    "count_user_scope",
]

Slot = tuple[str, str]  # (user, profile)
ISSUED = ("issued", "delivered", "installed")


def _slots(state: UserScopeState) -> dict[Slot, list[UserCertificate]]:
    out: dict[Slot, list[UserCertificate]] = defaultdict(list)
    for cert in state.certificates:
        out[(cert.user, cert.profile)].append(cert)
    return out


def _current(certs: list[UserCertificate]) -> list[UserCertificate]:
    return [c for c in certs if c.escrow == "current" and not c.revoked and c.state in ISSUED]


def _allowed_current(current: list[UserCertificate]) -> bool:
    """One current, or a renewal and the certificate it replaces (until devices install)."""
    if len(current) <= 1:
        return True
    if len(current) > 2:
        return False
    old, new = sorted(current, key=lambda c: c.kind == "renewal")
    return new.kind == "renewal" and new.replaces == old.request


def _newest(current: list[UserCertificate]) -> UserCertificate | None:
    renewals = [c for c in current if c.kind == "renewal"]
    ordered = renewals or current
    return ordered[-1] if ordered else None


def _held(state: UserScopeState) -> dict[str, dict[str, str]]:
    """device -> {request: usage} of the copies it holds."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for copy in state.copies:
        if copy.state == "installed" and copy.device_delete is None:
            out[copy.device][copy.request] = copy.usage
    return out


def _devices_of(state: UserScopeState) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for device, user in sorted(state.devices.items()):
        out[user].append(device)
    return out


def check_one_current(state: UserScopeState, ca: Iterable[CaCertificate] = ()) -> list[str]:
    violations: list[str] = []
    valid_at_ca = {(c.ca, c.serial) for c in ca if not c.revoked}
    for (user, profile), certs in sorted(_slots(state).items()):
        current = _current(certs)
        if not _allowed_current(current):
            listed = ", ".join(f"{c.issuer}:{c.serial}" for c in current)
            violations.append(
                f"user {user}, profile {profile}: {len(current)} current unrevoked "
                f"certificates ({listed}); at most one"
            )
        live = [c for c in certs if (c.issuer, c.serial) in valid_at_ca]
        if valid_at_ca and not _allowed_current(live):
            listed = ", ".join(f"{c.issuer}:{c.serial} ({c.escrow})" for c in live)
            violations.append(
                f"user {user}, profile {profile}: {len(live)} certificates still valid at "
                f"the CA ({listed}); at most one"
            )
    return violations


def _targeted_slots(
    state: UserScopeState,
) -> Iterator[tuple[str, str, list[UserCertificate], dict[str, dict[str, str]]]]:
    """Each (user, profile) a profile targets now, its certificates, and what each active
    device of the user holds (``device -> {request: usage}``)."""
    held, devices = _held(state), _devices_of(state)
    for (user, profile), certs in sorted(_slots(state).items()):
        if (user, profile) in state.targeted:
            yield user, profile, certs, {d: held.get(d, {}) for d in devices.get(user, [])}


def check_same_serial(state: UserScopeState) -> list[str]:
    violations: list[str] = []
    for user, profile, certs, devices in _targeted_slots(state):
        current = _current(certs)
        newest = _newest(current)
        if newest is None:
            continue
        serial_of = {c.request: c.serial for c in certs}
        accepted = {c.serial for c in current}
        for device, holds in devices.items():
            mine = {
                serial_of[r] for r, usage in holds.items() if usage == "current" and r in serial_of
            }
            if not mine & accepted:
                shown = ", ".join(sorted(mine)) or "nothing"
                violations.append(
                    f"device {device} of user {user} holds {shown} as the current certificate "
                    f"of profile {profile}, not the user's current one (serial {newest.serial})"
                    + _copy_note(state, device, {c.request for c in current})
                )
            elif len(mine) > len(accepted):
                violations.append(
                    f"device {device} of user {user} holds {len(mine)} current certificates "
                    f"of profile {profile} ({', '.join(sorted(mine))})"
                )
    return violations


def _copy_note(state: UserScopeState, device: str, requests: set[str]) -> str:
    """Where the device's copy of the current certificate is: a copy made and never
    collected is the device's (or the drill's check-ins') lag, no copy at all the
    service's."""
    states = sorted({c.state for c in state.copies if c.device == device and c.request in requests})
    if not states:
        return "; the service made no copy for this device"
    return f"; its copy is {'/'.join(states)} at the service"


def check_history_copies(state: UserScopeState) -> list[str]:
    violations: list[str] = []
    for user, profile, certs, devices in _targeted_slots(state):
        for cert in (c for c in certs if c.escrow == "history"):
            for device, holds in devices.items():
                if holds.get(cert.request) != "decrypt-only":
                    violations.append(
                        f"device {device} of user {user} lacks the decrypt-only history key "
                        f"{cert.issuer}:{cert.serial} of profile {profile} (old mail would "
                        "not open)"
                    )
    return violations


def check_removed_users(state: UserScopeState) -> list[str]:
    violations: list[str] = []
    copies: dict[str, list[UserCopy]] = defaultdict(list)
    for copy in state.copies:
        copies[copy.request].append(copy)
    for (user, profile), certs in sorted(_slots(state).items()):
        if (user, profile) in state.targeted:
            continue
        for cert in certs:
            if not cert.revoked:
                violations.append(
                    f"user {user} is no longer targeted by profile {profile}, but "
                    f"{cert.issuer}:{cert.serial} is not revoked"
                )
            for copy in copies.get(cert.request, []):
                if copy.state in ("delivered", "installed") and copy.device_delete != "done":
                    violations.append(
                        f"device {copy.device} of removed user {user} still holds "
                        f"{cert.issuer}:{cert.serial} of profile {profile}"
                    )
    return violations


def check_user_scope(snapshot: Snapshot) -> list[str]:
    state = snapshot.users
    return [
        *check_one_current(state, snapshot.ca_certificates),
        *check_same_serial(state),
        *check_history_copies(state),
        *check_removed_users(state),
    ]


def count_user_scope(state: UserScopeState) -> dict[str, int]:
    """What the drill exercised: certificates, users, devices holding copies, rollovers."""
    delivered = [c for c in state.certificates if c.state in ("delivered", "installed")]
    devices = {c.device for c in state.copies if c.state == "installed"}
    return {
        "delivered": len(delivered),
        "users": len({c.user for c in delivered}),
        "devices": len(devices),
        "rollovers": sum(1 for c in state.certificates if c.kind == "rollover"),
    }
