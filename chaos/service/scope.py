"""Pure rules of user-scoped profiles: one certificate per (user, profile) on all devices.

No I/O here; :mod:`chaos.service.user_certs` applies these and the unit tests
pin them down::

    user_outcome(Event.RETIRE_USER, Mode.HYBRID)
    # UserOutcome(fate=Fate.DEVICE_ONLY, reason="", delete_on_device=True, why=...)
    user_outcome(Event.BLOCK, Mode.STANDALONE)            # None: n/a, as in the seed table
    profile_scope_problem("user", "CN={{DeviceId}}", [])  # "a user-scoped profile ..."
    rollover_finished(installed={"d1"}, expected={"d1", "d2"}, waited_s=10, deadline_s=600)
    # Verdict(False, "1 of 2 devices ...")
    revocation_table(Scope.USER)                           # the rows the read API serves

A user-scoped certificate is shared by every device of its user, so what an
event does depends on whether the key may have left our control (a device
lost, stolen or blocked by an admin) or the user merely stopped using one of
their devices.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence, Set
from dataclasses import dataclass

from chaos.service.rules import Event, Mode, revocation_outcome

__all__ = [
    "DEVICE_VARIABLES",
    "Fate",
    "Scope",
    "TableRow",
    "UserOutcome",
    "Verdict",
    "profile_scope_problem",
    "revocation_table",
    "rollover_finished",
    "user_outcome",
]


class Scope(enum.StrEnum):
    DEVICE = "device"  # one certificate per (device, profile): the seed's default
    USER = "user"  # one certificate per (user, profile), on every device of the user


class Fate(enum.StrEnum):
    """What an event does to a user's shared certificate."""

    DEVICE_ONLY = "device-only"  # removed from that device; stays valid on the others
    ROLLOVER = "rollover"  # revoked (keyCompromise), re-issued, old key kept decrypt-only
    REVOKE_ALL = "revoke-all"  # revoked and removed from every device of the user


@dataclass(frozen=True)
class UserOutcome:
    fate: Fate
    reason: str  # CRL reason of the revocation ("" when nothing is revoked)
    delete_on_device: bool  # the device acted on deletes its copies (current and history)
    why: str


# Variables that name one device: a certificate shared by several cannot carry them.
DEVICE_VARIABLES = ("DeviceId", "AAD_Device_ID")


def user_outcome(event: Event, mode: Mode) -> UserOutcome | None:
    """The user-scope table; None where the seed table says n/a (block, delete in standalone)."""
    device = revocation_outcome(event, mode)
    if device is None:
        return None
    if event is Event.RETIRE_USER:
        return UserOutcome(
            Fate.DEVICE_ONLY,
            "",
            True,
            "the user removed a device they still hold: the key did not leave their control",
        )
    if event in (Event.RETIRE_ADMIN, Event.BLOCK, Event.DELETE_DEVICE):
        return UserOutcome(
            Fate.ROLLOVER,
            "keyCompromise",
            device.delete,
            "lost, stolen or compromised device: the private key left our control",
        )
    if event is Event.RENEWAL:
        return UserOutcome(
            Fate.ROLLOVER, "superseded", False, "renewed: the old key stays for decryption"
        )
    return UserOutcome(
        Fate.REVOKE_ALL, device.reason, True, "the user is no longer targeted by the profile"
    )


def profile_scope_problem(
    scope: str, subject_template: str, san_templates: Sequence[str]
) -> str | None:
    """Why this profile cannot have this scope (None: it can)."""
    if scope != Scope.USER:
        return None
    fields = [("subject_template", subject_template)]
    fields += [(f"san_templates[{i}]", t) for i, t in enumerate(san_templates)]
    for where, text in fields:
        for variable in DEVICE_VARIABLES:
            if "{{" + variable + "}}" in text.replace(" ", ""):
                return (
                    f"{where} uses {{{{{variable}}}}}, but a user-scoped profile (scope=user) "
                    "issues one certificate shared by all of the user's devices: it cannot "
                    "name one device; remove the variable or use scope=device"
                )
    return None


@dataclass(frozen=True)
class Verdict:
    done: bool
    reason: str


def rollover_finished(
    *, installed: Set[str], expected: Set[str], waited_s: float, deadline_s: float
) -> Verdict:
    """May the superseded certificate of a renewal be retired (revoked, kept decrypt-only)?

    Once every device expected to hold the new one reported it installed, or
    once ``deadline_s`` passed since the new one was issued (a device that
    never checks in must not keep the old certificate valid for ever).
    """
    missing = expected - installed
    if not missing:
        return Verdict(True, f"all {len(expected)} devices installed the new certificate")
    if waited_s >= deadline_s:
        return Verdict(
            True,
            f"deadline of {deadline_s:g} s passed with {len(missing)} of {len(expected)} "
            "devices still to install the new certificate",
        )
    return Verdict(
        False, f"{len(missing)} of {len(expected)} devices still to install the new certificate"
    )


@dataclass(frozen=True)
class TableRow:
    event: str
    scope: str
    standalone: str
    hybrid: str
    crl_reason: str


_FATE_TEXT = {
    Fate.DEVICE_ONLY: "deleted from that device only; stays valid on the others",
    Fate.ROLLOVER: "revoked; re-issued to the remaining devices; old key kept decrypt-only",
    Fate.REVOKE_ALL: "deleted from all devices & revoked",
}


def _cell(event: Event, mode: Mode, scope: Scope) -> tuple[str, str]:
    if scope is Scope.DEVICE:
        device = revocation_outcome(event, mode)
        if device is None:
            return "n/a", ""
        return ("deleted & revoked" if device.delete else "revoked"), device.reason
    user = user_outcome(event, mode)
    if user is None:
        return "n/a", ""
    text = _FATE_TEXT[user.fate]
    if user.fate is Fate.ROLLOVER and not user.delete_on_device:
        text = text.replace("revoked;", "revoked (kept on the blocked device);")
    return text, user.reason


def revocation_table(scope: Scope) -> list[TableRow]:
    """The revocation table of one scope, one row per admin action."""
    rows = []
    for event in Event:
        if event is Event.RENEWAL:
            continue
        standalone, reason_s = _cell(event, Mode.STANDALONE, scope)
        hybrid, reason_h = _cell(event, Mode.HYBRID, scope)
        rows.append(TableRow(event.value, scope.value, standalone, hybrid, reason_h or reason_s))
    return rows
