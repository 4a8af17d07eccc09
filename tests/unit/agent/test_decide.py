"""decide() is pure: every branch from a hand-built snapshot."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connector.agent.decide import Action, decide
from connector.agent.snapshot import (
    CAView,
    Health,
    Snapshot,
    Standing,
    TemplateView,
    standing_from_role,
)

UP = (TemplateView("user-auth", (CAView("primary", "closed"), CAView("secondary", "closed"))),)
HALF = (TemplateView("user-auth", (CAView("primary", "open"), CAView("secondary", "half-open"))),)
DOWN = (TemplateView("user-auth", (CAView("primary", "open"), CAView("secondary", "open"))),)


def steady_leader(**changes: object) -> Snapshot:
    """A leader at epoch 7 that registered, reconciled and just did its periodic work."""
    base = Snapshot(
        now=100.0,
        standing=Standing.LEADER,
        epoch=7,
        registered_epoch=7,
        reconciled_epoch=7,
        templates=UP,
        last_heartbeat_at=99.5,
        heartbeat_interval_s=2.0,
        last_revocation_poll_at=99.8,
        revocation_interval_s=1.0,
        last_reconcile_at=90.0,
        reconcile_interval_s=30.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_steady_leader_takes_new_work() -> None:
    decision = decide(steady_leader())
    assert decision.action is Action.ISSUE
    assert decision.epoch == 7
    assert decision.health is Health.HEALTHY


def test_stopping_beats_everything_even_a_rejected_epoch() -> None:
    decision = decide(steady_leader(stopping=True, rejected_epoch=7))
    assert decision.action is Action.STOP


def test_rejected_epoch_steps_down_before_any_side_effect() -> None:
    decision = decide(steady_leader(rejected_epoch=7))
    assert decision.action is Action.STEP_DOWN
    assert "409" in decision.reason


@pytest.mark.parametrize("standing", [Standing.LEADER, Standing.STANDBY, Standing.SUSPENDED])
def test_a_revoked_connector_leaves_the_election_whatever_its_role(standing: Standing) -> None:
    # Before the 409 check, before any side effect: a revoked member never leads.
    decision = decide(steady_leader(standing=standing, revoked="403 revoked", rejected_epoch=7))
    assert decision.action is Action.LEAVE
    assert "revoked" in decision.reason
    assert decision.health is Health.UNHEALTHY


def test_a_revoked_connector_out_of_the_election_only_waits() -> None:
    decision = decide(steady_leader(standing=Standing.STOPPED, epoch=None, revoked="403"))
    assert decision.action is Action.WAIT
    assert "revoked" in decision.reason


def test_suspended_does_nothing() -> None:
    decision = decide(steady_leader(standing=Standing.SUSPENDED, epoch=None))
    assert decision.action is Action.WAIT
    assert "suspended" in decision.reason


def test_suspended_does_nothing_even_if_an_epoch_leaked_into_the_snapshot() -> None:
    decision = decide(steady_leader(standing=Standing.SUSPENDED, epoch=7))
    assert decision.action is Action.WAIT


def test_leader_without_fresh_lease_waits_briefly() -> None:
    decision = decide(steady_leader(epoch=None))
    assert decision.action is Action.WAIT
    assert "fresh" in decision.reason
    assert decision.wait_s <= 0.1


def test_standby_never_acts_as_leader_even_with_an_epoch() -> None:
    decision = decide(steady_leader(standing=Standing.STANDBY, epoch=7, last_heartbeat_at=None))
    assert decision.action is Action.HEARTBEAT
    assert not decision.as_leader
    assert decision.epoch is None


def test_standby_waits_until_the_next_heartbeat() -> None:
    decision = decide(steady_leader(standing=Standing.STANDBY, epoch=None, last_heartbeat_at=99.5))
    assert decision.action is Action.WAIT
    assert decision.wait_s == pytest.approx(1.0)


def test_stopped_election_waits() -> None:
    decision = decide(steady_leader(standing=Standing.STOPPED, epoch=None))
    assert decision.action is Action.WAIT


def test_new_epoch_registers_first() -> None:
    decision = decide(steady_leader(epoch=8))
    assert decision.action is Action.REGISTER
    assert decision.epoch == 8


def test_takeover_reconciles_before_new_work_or_revocations() -> None:
    decision = decide(
        steady_leader(
            epoch=8, registered_epoch=8, last_revocation_poll_at=None, revocations_backlog=True
        )
    )
    assert decision.action is Action.RECONCILE
    assert "before new work" in decision.reason


def test_heartbeat_due_as_leader_carries_health() -> None:
    decision = decide(steady_leader(last_heartbeat_at=97.0, templates=HALF))
    assert decision.action is Action.HEARTBEAT
    assert decision.as_leader
    assert decision.health is Health.WARNING


def test_revocations_come_before_new_issuance() -> None:
    assert decide(steady_leader(last_revocation_poll_at=98.0)).action is Action.REVOKE
    assert decide(steady_leader(revocations_backlog=True)).action is Action.REVOKE


def test_periodic_reconcile_sweep() -> None:
    decision = decide(steady_leader(last_reconcile_at=60.0))
    assert decision.action is Action.RECONCILE
    assert "sweep" in decision.reason


def test_every_ca_down_keeps_requests_queued_and_reports_unhealthy() -> None:
    decision = decide(steady_leader(templates=DOWN))
    assert decision.action is Action.WAIT
    assert decision.health is Health.UNHEALTHY
    # It still wakes up for its heartbeat and revocation polls.
    assert decision.wait_s <= 1.0


def test_every_ca_down_still_heartbeats_unhealthy() -> None:
    decision = decide(steady_leader(templates=DOWN, last_heartbeat_at=90.0))
    assert decision.action is Action.HEARTBEAT
    assert decision.health is Health.UNHEALTHY


def test_half_open_breaker_lets_issuance_try() -> None:
    assert decide(steady_leader(templates=HALF)).action is Action.ISSUE


def test_one_template_down_is_unhealthy_but_others_still_issue() -> None:
    mixed = (*UP, TemplateView("wifi", (CAView("tertiary", "open"),)))
    decision = decide(steady_leader(templates=mixed))
    assert decision.action is Action.ISSUE
    assert decision.health is Health.UNHEALTHY


def test_ca_backoff_after_a_failed_batch() -> None:
    decision = decide(steady_leader(ca_retry_at=100.3))
    assert decision.action is Action.WAIT
    assert decision.wait_s == pytest.approx(0.3)
    assert decide(steady_leader(ca_retry_at=99.0)).action is Action.ISSUE


def test_service_backoff_applies_to_leader_and_standby() -> None:
    assert decide(steady_leader(service_retry_at=100.5)).action is Action.WAIT
    standby = steady_leader(standing=Standing.STANDBY, epoch=None, service_retry_at=100.5)
    assert decide(standby).action is Action.WAIT


def test_decide_is_deterministic() -> None:
    snap = steady_leader(epoch=9)
    assert decide(snap) == decide(snap)


@pytest.mark.parametrize(
    ("role", "standing"),
    [
        ("leader", Standing.LEADER),
        ("STANDBY", Standing.STANDBY),
        ("suspended", Standing.SUSPENDED),
        ("bogus", Standing.STOPPED),
    ],
)
def test_standing_from_role(role: str, standing: Standing) -> None:
    assert standing_from_role(role) is standing


def test_busy_workers_wait_instead_of_taking_more_work() -> None:
    decision = decide(steady_leader(issue_capacity=0))
    assert decision.action is Action.WAIT
    assert "busy" in decision.reason
    # Periodic duties still come first.
    assert (
        decide(steady_leader(issue_capacity=0, last_heartbeat_at=90.0)).action is Action.HEARTBEAT
    )


def test_a_leader_whose_lease_stays_unproven_hands_it_over() -> None:
    brief = decide(steady_leader(epoch=None, lease_unfresh_s=0.3))
    assert brief.action is Action.WAIT
    stuck = decide(steady_leader(epoch=None, lease_unfresh_s=2.5, lease_unfresh_limit_s=2.0))
    assert stuck.action is Action.STEP_DOWN
    assert "fresh lease" in stuck.reason


def test_a_blind_certdb_still_reconciles_first_and_says_why() -> None:
    decision = decide(steady_leader(reconciled_epoch=None, reconcile_blocked=("primary",)))
    assert decision.action is Action.RECONCILE
    assert "certdb of primary not answering" in decision.reason
    assert decision.health is Health.UNHEALTHY


def test_waiting_intents_do_not_stop_new_work_but_are_named() -> None:
    decision = decide(steady_leader(intents_waiting=2, reconcile_blocked=("primary",)))
    assert decision.action is Action.ISSUE
    assert "2 older intent(s) wait, not issued anew" in decision.reason
    assert "certdb of primary" in decision.reason
    assert decision.health is Health.UNHEALTHY


def test_waiting_intents_are_swept_when_due() -> None:
    decision = decide(steady_leader(intents_waiting=1, last_reconcile_at=50.0))
    assert decision.action is Action.RECONCILE
    assert "intents wait for a certdb" in decision.reason


def test_a_standby_sweeps_the_keys_it_watched_while_leading() -> None:
    standby = steady_leader(
        standing=Standing.STANDBY, epoch=None, late_watched=2, reconcile_interval_s=1.0
    )
    decision = decide(standby)
    assert decision.action is Action.SWEEP_LATE
    assert decision.epoch is None
    assert "2 key(s)" in decision.reason
    # Swept 0.4 s ago: wait for the next sweep, which comes before the next heartbeat.
    decision = decide(replace(standby, last_late_sweep_at=99.6))
    assert decision.action is Action.WAIT
    assert decision.wait_s == pytest.approx(0.6)
    # Nothing watched, nothing swept.
    assert decide(replace(standby, late_watched=0)).action is Action.WAIT
    # A due sweep comes before a due heartbeat, and before the service's back-off:
    # it needs the CAs only (a deposed leader is often cut from the service).
    assert decide(replace(standby, last_heartbeat_at=None)).action is Action.SWEEP_LATE
    backing_off = replace(standby, service_retry_at=105.0)
    assert decide(backing_off).action is Action.SWEEP_LATE
    decision = decide(replace(backing_off, last_late_sweep_at=99.8))
    assert decision.action is Action.WAIT
    assert decision.wait_s == pytest.approx(0.8)  # the next sweep, not the back-off's end
    # Swept just now: the heartbeat that is due goes out.
    swept = replace(standby, last_late_sweep_at=100.0, last_heartbeat_at=None)
    assert decide(swept).action is Action.HEARTBEAT


def test_a_stopped_or_suspended_connector_does_not_sweep() -> None:
    for standing in (Standing.STOPPED, Standing.SUSPENDED):
        snapshot = steady_leader(standing=standing, epoch=None, late_watched=2)
        assert decide(snapshot).action is Action.WAIT
