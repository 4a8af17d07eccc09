"""The user-scope checkers pass a clean state and catch each planted violation."""

from __future__ import annotations

import dataclasses

from chaos.checkers import CaCertificate, Snapshot, check_all, check_user_scope, count_user_scope
from chaos.checkers.model import UserCertificate, UserCopy, UserScopeState
from chaos.checkers.user_scope import (
    check_history_copies,
    check_one_current,
    check_removed_users,
    check_same_serial,
)

OLD = UserCertificate("r1", "ann", "smime", "11", "primary", "history", True, "new")
NEW = UserCertificate("r2", "ann", "smime", "12", "primary", "current", False, "rollover", "r1")


def clean() -> UserScopeState:
    """Ann had three devices; phone was lost (admin retire): rolled over, two remain."""
    return UserScopeState(
        certificates=(OLD, NEW),
        copies=(
            UserCopy("laptop", "r1", "decrypt-only", "installed"),
            UserCopy("laptop", "r2", "current", "installed"),
            UserCopy("tablet", "r1", "decrypt-only", "installed"),
            UserCopy("tablet", "r2", "current", "installed"),
            UserCopy("phone", "r1", "current", "installed", "done"),
        ),
        devices={"laptop": "ann", "tablet": "ann"},
        targeted=frozenset({("ann", "smime")}),
    )


CA = (CaCertificate("primary", "11", True), CaCertificate("primary", "12", False))


def test_a_clean_rollover_passes_every_checker_and_is_counted() -> None:
    assert check_user_scope(Snapshot(ca_certificates=CA, users=clean())) == []
    assert count_user_scope(clean()) == {"delivered": 0, "users": 0, "devices": 3, "rollovers": 1}
    installed = dataclasses.replace(clean(), certificates=(OLD, _with(NEW, state="installed")))
    assert count_user_scope(installed)["users"] == 1


def _with(cert: UserCertificate, **changes: object) -> UserCertificate:
    return dataclasses.replace(cert, **changes)  # type: ignore[arg-type]


def test_two_current_certificates_of_one_user_are_a_violation_but_a_renewal_is_not() -> None:
    second = UserCertificate("r3", "ann", "smime", "13", "secondary", "current", False)
    state = dataclasses.replace(clean(), certificates=(OLD, NEW, second))
    (violation,) = check_one_current(state)
    assert "2 current unrevoked certificates" in violation
    renewal = _with(second, kind="renewal", replaces="r2")
    assert check_one_current(dataclasses.replace(clean(), certificates=(OLD, NEW, renewal))) == []


def test_the_history_key_still_valid_at_the_ca_is_a_violation() -> None:
    ca = (CaCertificate("primary", "11", False), CaCertificate("primary", "12", False))
    (violation,) = check_one_current(clean(), ca)
    assert "2 certificates still valid at the CA" in violation


def test_a_device_without_the_current_certificate_is_a_violation() -> None:
    copies = tuple(c for c in clean().copies if (c.device, c.request) != ("tablet", "r2"))
    stale = (*copies, UserCopy("tablet", "r1", "current", "installed"))
    (violation,) = check_same_serial(dataclasses.replace(clean(), copies=stale))
    assert "device tablet of user ann holds 11" in violation
    assert "(serial 12); the service made no copy for this device" in violation


def test_a_copy_never_collected_is_a_violation_that_says_where_the_copy_is() -> None:
    """The drill's devices falling behind (a copy made, never collected) reads differently
    from a copy the service never made."""
    copies = tuple(c for c in clean().copies if (c.device, c.request) != ("tablet", "r2"))
    waiting = (*copies, UserCopy("tablet", "r2", "current", "ready"))
    (violation,) = check_same_serial(dataclasses.replace(clean(), copies=waiting))
    assert "device tablet of user ann holds nothing" in violation
    assert violation.endswith("; its copy is ready at the service")


def test_a_missing_history_key_is_a_violation() -> None:
    copies = tuple(c for c in clean().copies if (c.device, c.request) != ("laptop", "r1"))
    state = dataclasses.replace(clean(), copies=copies)
    (violation,) = check_history_copies(state)
    assert "device laptop of user ann lacks the decrypt-only history key primary:11" in violation
    assert violation in check_all([], Snapshot(users=state))  # every drill runs it


def test_a_removed_user_with_anything_left_is_a_violation() -> None:
    removed = dataclasses.replace(
        clean(),
        certificates=(_with(OLD, escrow="withdrawn"), _with(NEW, escrow="withdrawn")),
        targeted=frozenset(),
    )
    found = check_removed_users(removed)
    assert any("primary:12 is not revoked" in v for v in found)
    assert any("device laptop of removed user ann still holds primary:12" in v for v in found)
    gone = dataclasses.replace(
        removed,
        certificates=tuple(_with(c, revoked=True) for c in removed.certificates),
        copies=tuple(dataclasses.replace(c, device_delete="done") for c in clean().copies),
    )
    assert check_removed_users(gone) == []
    assert check_same_serial(gone) == []  # no longer targeted: nothing to hold
