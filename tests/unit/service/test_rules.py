from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.service.rules import (
    MAX_EPOCH,
    AdvancePolicy,
    Event,
    Mode,
    advance_verdict,
    epoch_problem,
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


# -- epoch bounds and the advance budget ------------------------------------------


@pytest.mark.parametrize(
    "epoch", [True, False, 1.0, float("nan"), float("inf"), -1, MAX_EPOCH + 1, 2**62, "7", None]
)
def test_epoch_problem_refuses_what_is_no_epoch(epoch: object) -> None:
    assert epoch_problem(epoch)


@pytest.mark.parametrize("epoch", [0, 1, 404, MAX_EPOCH])
def test_epoch_problem_accepts_bounded_integers(epoch: int) -> None:
    assert epoch_problem(epoch) is None


def test_max_epoch_is_exact_in_a_double_and_far_above_zookeeper() -> None:
    assert float(MAX_EPOCH) == MAX_EPOCH
    assert float(MAX_EPOCH + 1) == MAX_EPOCH + 1
    assert MAX_EPOCH < 2**53
    assert MAX_EPOCH > 2**31 * 1000  # ZooKeeper's counter: one CAS per leadership, int32 version


POLICY = AdvancePolicy(capacity=100, refill_per_s=1.0)


def test_an_advance_within_the_budget_spends_it() -> None:
    verdict = advance_verdict(140, 100, budget=50.0, budget_at=0.0, now=0.0, policy=POLICY)
    assert verdict.ok
    assert verdict.budget == 10.0


def test_an_advance_beyond_the_budget_waits_for_the_refill() -> None:
    verdict = advance_verdict(160, 100, budget=50.0, budget_at=0.0, now=0.0, policy=POLICY)
    assert not verdict.ok
    assert verdict.retry_after_s == 10.0
    assert verdict.budget == 50.0
    later = advance_verdict(160, 100, budget=50.0, budget_at=0.0, now=10.0, policy=POLICY)
    assert later.ok


def test_an_advance_beyond_the_capacity_needs_an_admin() -> None:
    verdict = advance_verdict(1_000_000, 1, budget=100.0, budget_at=0.0, now=1e9, policy=POLICY)
    assert not verdict.ok
    assert verdict.retry_after_s is None
    assert "forgery" in verdict.reason
    accepted = advance_verdict(
        1_000_000, 1, budget=100.0, budget_at=0.0, now=0.0, policy=POLICY, admin_accepted=True
    )
    assert accepted.ok
    assert accepted.budget == 100.0  # an accepted jump spends nothing


def test_a_clock_going_backwards_refills_nothing() -> None:
    verdict = advance_verdict(110, 100, budget=5.0, budget_at=1000.0, now=0.0, policy=POLICY)
    assert not verdict.ok


@given(
    jumps=st.lists(st.integers(1, 500), max_size=30),
    gaps=st.lists(st.floats(-100, 100), min_size=30, max_size=30),
)
def test_the_budget_bounds_the_total_advance(jumps: list[int], gaps: list[float]) -> None:
    """Whatever a forger tries: total rise <= capacity + refill * forward time."""
    highest, budget, budget_at, now, forward = 0, 100.0, 0.0, 0.0, 0.0
    for jump, gap in zip(jumps, gaps, strict=False):
        now += gap
        forward += max(0.0, gap)
        verdict = advance_verdict(
            highest + jump, highest, budget=budget, budget_at=budget_at, now=now, policy=POLICY
        )
        if verdict.ok:
            highest, budget, budget_at = highest + jump, verdict.budget, now
    assert highest <= POLICY.capacity + POLICY.refill_per_s * forward
