"""Work-aware leadership, pure parts: what a member reaches, who else does, and when to yield."""

from __future__ import annotations

import pytest

from connector.agent.decide import Action, decide
from connector.agent.probes import Probe, ReachProber, probe_of
from connector.agent.reach import OK, UNREACHABLE, PeerReach, Reach
from connector.agent.snapshot import Blocked, Health
from tests.unit.agent.test_decide import steady_leader


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- Reach: our own record -------------------------------------------------------------


def test_unreachable_counts_from_the_last_success_not_the_first_failure() -> None:
    clock = Clock()
    reach = Reach(clock, stale_s=2.0)
    reach.record("service", ok=True)
    clock.now += 3.0  # a call hangs on a swallowed link for 3 s, then fails
    reach.record("service", ok=False)
    assert reach.unreachable_for("service") == pytest.approx(3.0)
    reach.record("service", ok=True)
    assert reach.unreachable_for("service") == 0.0


def test_the_report_says_failed_when_the_last_outcome_failed_or_is_stale() -> None:
    clock = Clock()
    reach = Reach(clock, stale_s=2.0)
    reach.record("service", ok=True)
    reach.record("ca:primary", ok=False)
    assert reach.report() == {"ca:primary": UNREACHABLE, "service": OK}
    clock.now += 2.5  # no outcome since: a hung prober proves nothing
    assert reach.report()["service"] == UNREACHABLE


def test_a_target_never_reached_is_unreachable_since_it_was_first_tried() -> None:
    clock = Clock()
    reach = Reach(clock)
    reach.record("ca:secondary", ok=False)
    clock.now += 4.0
    reach.record("ca:secondary", ok=False)
    assert reach.unreachable_for("ca:secondary") == pytest.approx(4.0)
    assert reach.unreachable_for("never-asked") == 0.0


def test_any_failing_follows_the_latest_outcome_of_every_target() -> None:
    # The yield watch skips its snapshot while this is False: it must be False
    # exactly when no target's unreachable_for is above zero.
    clock = Clock()
    reach = Reach(clock)
    assert not reach.any_failing()
    reach.record("service", ok=True)
    reach.record("ca:primary", ok=False)
    assert reach.any_failing()
    reach.record("ca:primary", ok=True)
    clock.now += 10.0  # stale is not failing: only a failed outcome blocks
    assert not reach.any_failing()
    assert reach.unreachable_for("service") == reach.unreachable_for("ca:primary") == 0.0


# -- PeerReach: what the others publish, judged on our clock ----------------------------


def test_a_peer_is_able_after_two_fresh_ok_reports_in_a_row() -> None:
    clock = Clock()
    peers = PeerReach(clock, fresh_s=3.0)
    peers.observe("c2", {"service": OK}, seq=1)
    assert peers.able("service") == ()  # one report is not "continuously"
    clock.now += 1.0
    peers.observe("c2", {"service": OK}, seq=2)
    assert peers.able("service") == ("c2",)
    assert peers.able("service", among={"c3"}) == ()


def test_a_peer_whose_report_stopped_changing_is_not_fresh() -> None:
    clock = Clock()
    peers = PeerReach(clock, fresh_s=3.0)
    peers.observe("c2", {"service": OK}, seq=1)
    clock.now += 1.0
    peers.observe("c2", {"service": OK}, seq=2)
    clock.now += 3.5
    peers.observe("c2", {"service": OK}, seq=2)  # same number: nobody rewrote it
    assert peers.able("service") == ()


def test_a_peer_that_failed_in_between_is_not_continuously_able() -> None:
    clock = Clock()
    peers = PeerReach(clock, fresh_s=3.0)
    peers.observe("c2", {"service": UNREACHABLE}, seq=1)
    clock.now += 1.0
    peers.observe("c2", {"service": OK}, seq=2)
    assert peers.able("service") == ()
    peers.forget_except(["c3"])
    clock.now += 1.0
    peers.observe("c2", {"service": OK}, seq=3)
    assert peers.able("service") == ()  # forgotten: starts over


# -- decide(): the rule ---------------------------------------------------------------


def _blocked_leader(**changes: object) -> object:
    base = {
        "blocked": (Blocked("service", 2.0, ("c2",)),),
        "yield_after_s": 1.5,
        "min_in_office_s": 1.0,
        "in_office_s": 10.0,
    }
    return steady_leader(**{**base, **changes})


def test_a_leader_cut_from_the_service_hands_over_to_a_standby_that_reaches_it() -> None:
    decision = decide(_blocked_leader())  # type: ignore[arg-type]
    assert decision.action is Action.YIELD
    assert decision.target == "c2"
    assert decision.dependency == "service"
    assert decision.health is Health.UNHEALTHY
    assert "service unreachable" in decision.reason
    assert "c2" in decision.reason


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"blocked": (Blocked("service", 1.0, ("c2",)),)}, "a blip below the threshold"),
        ({"blocked": (Blocked("service", 9.0, ()),)}, "down for everyone"),
        ({"in_office_s": 0.5}, "too new in office"),
        ({"yield_refused": "budget spent"}, "the cluster's yield budget is spent"),
        ({"yield_after_s": float("inf")}, "yielding turned off"),
    ],
)
def test_no_hand_over_when_the_rules_say_no(changes: dict[str, object], why: str) -> None:
    decision = decide(_blocked_leader(**changes))  # type: ignore[arg-type]
    assert decision.action is not Action.YIELD, why


def test_a_leader_handing_over_takes_no_new_work() -> None:
    decision = decide(_blocked_leader(handing_over_to="c2"))  # type: ignore[arg-type]
    assert decision.action is Action.WAIT
    assert "handing the lease over to c2" in decision.reason


def test_a_blocked_template_names_itself_in_the_reason() -> None:
    blocked = (Blocked("template user-auth", 3.0, ("c3",)),)
    decision = decide(_blocked_leader(blocked=blocked))  # type: ignore[arg-type]
    assert decision.action is Action.YIELD
    assert decision.target == "c3"
    assert decision.reason.startswith("template user-auth unreachable")


# -- probes ---------------------------------------------------------------------------


def test_a_probe_is_unreachable_when_its_call_raises_or_answers_false() -> None:
    def raises(timeout: float) -> None:
        raise ConnectionError("swallowed")

    assert probe_of(lambda timeout: False)(0.5) is False  # CARouter.probe's "no"
    assert probe_of(raises)(0.5) is False
    assert probe_of(lambda timeout: None)(0.5) is True  # ServiceClient.probe returns None
    assert probe_of(lambda timeout: True)(0.5) is True


def test_the_prober_records_each_outcome_and_wakes_on_change() -> None:
    clock = Clock()
    reach = Reach(clock)
    woken: list[bool] = []
    answers = {"service": True, "ca:primary": False}
    prober = ReachProber(
        reach,
        {t: (lambda timeout_s, t=t: answers[t]) for t in answers},
        interval_s=1.0,
        timeout_s=0.5,
        on_change=lambda: woken.append(True),
    )
    prober.probe_once()
    assert reach.report() == {"ca:primary": UNREACHABLE, "service": OK}
    assert woken == [True]
    prober.probe_once()
    assert woken == [True]  # nothing changed
    prober.stop()


def test_a_target_that_answered_real_work_within_half_an_interval_is_not_probed() -> None:
    clock = Clock()
    reach = Reach(clock)
    probed: list[str] = []
    answers = {"service": True, "ca:primary": True}

    def probe(target: str) -> Probe:
        def run(timeout_s: float) -> bool:
            probed.append(target)
            return answers[target]

        return run

    prober = ReachProber(reach, {t: probe(t) for t in answers}, interval_s=2.0, timeout_s=0.5)
    reach.record("ca:primary", ok=True)  # an issue answered just now
    clock.now += 0.9
    prober.probe_once()
    assert probed == ["service"]
    clock.now += 0.2  # that answer is now older than half an interval: probe again
    prober.probe_once()  # (the service's probe answered 0.2 s ago: not again)
    assert probed == ["service", "ca:primary"]
    # A failure of real work is never taken for an answer: the next round probes it.
    reach.record("ca:primary", ok=False)
    answers["ca:primary"] = False
    probed.clear()
    prober.probe_once()
    assert "ca:primary" in probed
    assert reach.report()["ca:primary"] == UNREACHABLE
    prober.stop()
