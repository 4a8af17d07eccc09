from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.service.rules import (
    Event,
    Mode,
    fence,
    register_verdict,
    renewal_due,
    revocation_outcome,
)

# The seed's table: (standalone, hybrid); None = n/a; (revoke, delete).
SEED_TABLE = {
    Event.RETIRE_USER: ((True, True), (True, True)),
    Event.RETIRE_ADMIN: ((True, True), (True, True)),
    Event.BLOCK: (None, (True, False)),
    Event.DELETE_DEVICE: (None, (True, True)),
    Event.LEAVE_GROUP: ((True, True), (True, True)),
    Event.DELETE_PROFILE: ((True, True), (True, True)),
    Event.REMOVE_ASSIGNMENT: ((True, True), (True, True)),
}


@pytest.mark.parametrize("event", list(SEED_TABLE))
@pytest.mark.parametrize("mode", list(Mode))
def test_revocation_outcome_follows_the_seed_table(event: Event, mode: Mode) -> None:
    standalone, hybrid = SEED_TABLE[event]
    expected = standalone if mode is Mode.STANDALONE else hybrid
    outcome = revocation_outcome(event, mode)
    if expected is None:
        assert outcome is None
    else:
        assert outcome is not None
        assert (outcome.revoke, outcome.delete) == expected


def test_renewal_supersedes_and_user_revoke_works_in_both_modes() -> None:
    for mode in Mode:
        renewal = revocation_outcome(Event.RENEWAL, mode)
        everything = revocation_outcome(Event.REVOKE_ALL_OF_USER, mode)
        assert renewal is not None
        assert renewal.reason == "superseded"
        assert everything is not None
        assert everything.revoke


START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_renewal_threshold_is_remaining_lifetime() -> None:
    end = START + dt.timedelta(days=100)
    assert not renewal_due(START, end, 20, START + dt.timedelta(days=79))
    assert renewal_due(START, end, 20, START + dt.timedelta(days=80))
    assert renewal_due(START, end, 20, end + dt.timedelta(days=1))


@given(
    days=st.integers(min_value=1, max_value=3650),
    threshold=st.integers(min_value=1, max_value=99),
    elapsed=st.floats(min_value=0, max_value=1.2),
)
def test_renewal_due_exactly_when_remaining_share_is_at_most_threshold(
    days: int, threshold: int, elapsed: float
) -> None:
    end = START + dt.timedelta(days=days)
    now = START + (end - START) * elapsed
    remaining_share = (end - now) / (end - START)
    due = renewal_due(START, end, threshold, now)
    if remaining_share < threshold / 100 - 1e-9:
        assert due
    if remaining_share > threshold / 100 + 1e-9:
        assert not due


def test_fence_refuses_lower_epochs_and_other_holders() -> None:
    assert fence(5, "a", 5, "a").ok
    assert fence(4, "a", 5, "a").stale
    assert fence(5, "b", 5, "a").stale
    unregistered = fence(6, "a", 5, "a")
    assert not unregistered.ok
    assert unregistered.not_registered
    assert not unregistered.stale


def test_register_takes_a_higher_epoch_or_repeats_its_own() -> None:
    assert register_verdict(1, "a", 0, None).ok
    assert register_verdict(6, "b", 5, "a").ok
    assert register_verdict(5, "a", 5, "a").ok
    assert register_verdict(5, "b", 5, "a").stale
    assert register_verdict(4, "a", 5, "a").stale
