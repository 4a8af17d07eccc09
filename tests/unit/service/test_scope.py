"""The user-scope rules (chaos.service.scope): pure, beside the seed's device table."""

from __future__ import annotations

import pytest

from chaos.service.rules import Event, Mode, revocation_outcome
from chaos.service.scope import (
    Fate,
    Scope,
    profile_scope_problem,
    revocation_table,
    rollover_finished,
    user_outcome,
)

# event -> (fate, CRL reason, the acted-on device deletes its copies); both modes unless n/a.
USER_TABLE = {
    Event.RETIRE_USER: (Fate.DEVICE_ONLY, "", True),
    Event.RETIRE_ADMIN: (Fate.ROLLOVER, "keyCompromise", True),
    Event.BLOCK: (Fate.ROLLOVER, "keyCompromise", False),
    Event.DELETE_DEVICE: (Fate.ROLLOVER, "keyCompromise", True),
    Event.LEAVE_GROUP: (Fate.REVOKE_ALL, "affiliationChanged", True),
    Event.DELETE_PROFILE: (Fate.REVOKE_ALL, "cessationOfOperation", True),
    Event.REMOVE_ASSIGNMENT: (Fate.REVOKE_ALL, "privilegeWithdrawn", True),
    Event.REVOKE_ALL_OF_USER: (Fate.REVOKE_ALL, "privilegeWithdrawn", True),
}


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("event", list(USER_TABLE))
def test_user_outcome_follows_the_user_scope_table(event: Event, mode: Mode) -> None:
    outcome = user_outcome(event, mode)
    if revocation_outcome(event, mode) is None:  # the seed's n/a cells stay n/a
        assert outcome is None
        return
    assert outcome is not None
    assert (outcome.fate, outcome.reason, outcome.delete_on_device) == USER_TABLE[event]
    assert outcome.why


def test_renewal_keeps_the_old_key_for_decryption() -> None:
    outcome = user_outcome(Event.RENEWAL, Mode.HYBRID)
    assert outcome is not None
    assert (outcome.fate, outcome.reason) == (Fate.ROLLOVER, "superseded")


@pytest.mark.parametrize(
    ("subject", "sans", "where"),
    [
        ("CN={{UserName}},serialNumber={{DeviceId}}", [], "subject_template"),
        ("CN={{UserName}}", ["email={{EmailAddress}}", "URI=x://{{ AAD_Device_ID }}"], "[1]"),
    ],
)
def test_a_user_scoped_profile_cannot_name_a_device(
    subject: str, sans: list[str], where: str
) -> None:
    problem = profile_scope_problem("user", subject, sans)
    assert problem is not None
    assert where in problem
    assert "scope=user" in problem
    assert profile_scope_problem("device", subject, sans) is None


def test_a_user_scoped_profile_may_name_the_user() -> None:
    assert profile_scope_problem("user", "CN={{UserName}}", ["email={{EmailAddress}}"]) is None


def test_the_superseded_certificate_waits_for_every_device_or_the_deadline() -> None:
    devices = {"d1", "d2", "d3"}
    waiting = rollover_finished(
        installed={"d1", "d2"}, expected=devices, waited_s=10, deadline_s=60
    )
    assert not waiting.done
    assert "1 of 3" in waiting.reason
    assert rollover_finished(installed=devices, expected=devices, waited_s=0, deadline_s=60).done
    late = rollover_finished(installed={"d1"}, expected=devices, waited_s=60, deadline_s=60)
    assert late.done
    assert "deadline" in late.reason
    # A device retired meanwhile is no longer expected; an extra one does not matter.
    assert rollover_finished(
        installed={"d1", "old"}, expected={"d1"}, waited_s=0, deadline_s=60
    ).done


def test_the_tables_have_one_row_per_action_and_agree_with_the_rules() -> None:
    device = {r.event: r for r in revocation_table(Scope.DEVICE)}
    user = {r.event: r for r in revocation_table(Scope.USER)}
    actions = {e.value for e in Event} - {Event.RENEWAL.value}
    assert set(device) == set(user) == actions
    assert device["block"].standalone == user["block"].standalone == "n/a"
    assert device["block"].hybrid == "revoked"
    assert device["retire-user"].hybrid == "deleted & revoked"
    assert "that device only" in user["retire-user"].hybrid
    assert user["retire-user"].crl_reason == ""
    assert user["retire-admin"].crl_reason == "keyCompromise"
    assert "kept on the blocked device" in user["block"].hybrid
    assert "all devices" in user["leave-group"].standalone
