"""The random nemesis (issue 16, item 5): its seeded schedule, its bounds, its measurements."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from chaos.drill.cli import drill
from chaos.drill.observer import LeaderChange
from chaos.drill.random_run import Delivery, Injected, measure_fault
from chaos.drill.result import ScenarioResult, contract
from chaos.drill.schedule import (
    KINDS,
    Schedule,
    ScheduledFault,
    available_kinds,
    format_schedule,
    limits_for,
    make_schedule,
)
from chaos.launch.proxy import LinkFaults, Toxics
from chaos.nemesis.link import slow_faults

EVERY = list(KINDS.values())


def _plan(seed: int, duration: float = 600.0, **kw: object) -> Schedule:
    return make_schedule(seed=seed, duration_s=duration, kinds=EVERY, **kw)  # type: ignore[arg-type]


def test_the_same_seed_makes_the_same_schedule_and_another_seed_another() -> None:
    assert _plan(7) == _plan(7)
    assert format_schedule(_plan(7)) == format_schedule(_plan(7))
    assert _plan(7).faults != _plan(8).faults


def test_a_schedule_keeps_every_bound_at_every_start_and_heals_by_the_end() -> None:
    for seed in range(30):
        plan = _plan(seed, duration=300.0, connectors=3, max_concurrent=3)
        assert plan.faults, seed
        for fault in plan.faults:
            assert fault.hold_s >= KINDS[fault.kind].min_hold_s
            assert fault.at_s > 0
            assert fault.end_s <= 300.0
            at_once = plan.concurrent_at(fault.at_s)
            assert fault in at_once, (seed, fault)
            assert len(at_once) <= 3, (seed, fault)
            for resource, limit in limits_for(3).items():
                holding = [f for f in at_once if resource in KINDS[f.kind].uses]
                assert len(holding) <= limit, (seed, resource, at_once)
        assert [f.index for f in plan.faults] == list(range(1, len(plan.faults) + 1))


def test_faults_overlap_and_every_kind_shows_up_in_a_long_schedule() -> None:
    plan = _plan(7)
    assert {f.kind for f in plan.faults} == set(KINDS)
    assert any(len(plan.concurrent_at(f.at_s)) >= 2 for f in plan.faults)
    assert all(f.rtt_s is not None for f in plan.faults if f.kind == "latency")


def test_a_bound_of_one_means_one_fault_at_a_time() -> None:
    plan = _plan(3, max_concurrent=1)
    assert all(len(plan.concurrent_at(f.at_s)) == 1 for f in plan.faults)


def test_two_connectors_leave_one_untouched_and_one_cannot_run() -> None:
    plan = _plan(5, connectors=2)
    for fault in plan.faults:
        at_once = plan.concurrent_at(fault.at_s)
        assert sum("connector" in KINDS[f.kind].uses for f in at_once) <= 1
    with pytest.raises(ValueError, match="2 connectors"):
        _plan(5, connectors=1)


def test_kinds_the_lab_cannot_make_are_left_out() -> None:
    names = {k.name for k in available_kinds(links=False, partition=False)}
    assert not names & {"service-cut", "ca-cut", "latency", "service-down", "partition"}
    assert {"kill", "pause", "ca-down", "zk-quorum-loss"} <= names
    cluster_kinds = {"ca-node-loss", "ca-node-stall"}  # the primary CA on OpenBao only
    assert {k.name for k in available_kinds(links=True, partition=True)} == set(KINDS) - (
        cluster_kinds
    )
    every = available_kinds(links=True, partition=True, ca_cluster=True)
    assert {k.name for k in every} == set(KINDS)


def test_seed_7_plans_on_cfssl_what_it_planned_before_the_openbao_kinds() -> None:
    # The CA cluster's kinds come last in KINDS, so a lab without them draws as before
    # (the first faults of this plan, from the code before they existed).
    kinds = available_kinds(links=True, partition=True)
    plan = make_schedule(seed=7, duration_s=120, kinds=kinds, connectors=3, max_concurrent=3)
    first = [(f.kind, round(f.at_s, 2), round(f.hold_s, 2)) for f in plan.faults[:6]]
    assert first == [
        ("pause", 2.93, 4.37),
        ("ca-down", 3.79, 1.66),
        ("ca-down", 8.66, 2.5),
        ("latency", 9.8, 1.49),
        ("ca-all-down", 13.48, 1.87),
        ("ca-stall", 15.65, 5.08),
    ]
    assert len(plan.faults) == 28


@pytest.mark.parametrize("bad", [{"duration": 0.0}, {"max_concurrent": 0}])
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"duration|max_concurrent"):
        _plan(1, **bad)


def test_the_schedule_json_says_what_runs_when() -> None:
    data = _plan(7, duration=60.0).to_json()
    assert data["seed"] == 7
    assert data["duration_s"] == 60.0
    first = data["faults"][0]
    assert set(first) == {"index", "kind", "at_s", "hold_s", "rtt_s", "end_s"}


def test_a_latency_spike_adds_to_the_link_and_refuses_nothing() -> None:
    wan = LinkFaults(up=Toxics(latency_s=0.04), down=Toxics(latency_s=0.04))
    slow = slow_faults(wan, 0.2)
    assert slow.up.latency_s == pytest.approx(0.14)
    assert slow.down.latency_s == pytest.approx(0.14)
    with pytest.raises(ValueError, match="more than 0 s"):
        slow_faults(wan, 0.0)


# -- measurements -----------------------------------------------------------------


def _rec(kind: str, *, at: float = 10.0, healed: float = 14.0, target: str | None = "c1",
         leader: str = "c1", epoch: int = 3, index: int = 1) -> Injected:  # fmt: skip
    planned = ScheduledFault(index, kind, at, healed - at)
    return Injected(planned, target if KINDS[kind].targets_connector else None, leader, epoch,
                    at, healed_at=healed)  # fmt: skip


Measured = tuple[float | None, list[str], list[str]]


def _measure(
    rec: Injected, deliveries: list[Delivery], others: list[Injected] | None = None
) -> Measured:
    out = measure_fault(rec, [rec, *(others or [])], deliveries, [],
                        secondary_ca="secondary", window_s=20.0)  # fmt: skip
    return out.failover_s, out.violations, out.notes


def test_a_killed_leader_recovers_at_the_first_certificate_of_a_newer_epoch() -> None:
    rec = _rec("kill")
    deliveries = [Delivery(10.5, 3, "primary"), Delivery(11.2, 4, "primary")]
    changes = [LeaderChange(10.9, "c2", 4)]
    out = measure_fault(rec, [rec], deliveries, changes, secondary_ca="secondary", window_s=20)
    assert out.failover_s == pytest.approx(1.2)
    assert (out.new_leader, out.new_epoch, out.new_leader_s) == ("c2", 4, pytest.approx(0.9))
    assert out.fault == "kill c1"


def test_recoveries_per_kind() -> None:
    ca = [Delivery(10.3, 3, "primary"), Delivery(10.8, 3, "secondary")]
    assert _measure(_rec("ca-down"), ca)[0] == pytest.approx(0.8)
    after_heal = [Delivery(12.0, 3, "primary"), Delivery(14.5, 3, "primary")]
    assert _measure(_rec("ca-all-down"), after_heal)[0] == pytest.approx(0.5)
    assert _measure(_rec("zk-node-loss"), after_heal)[0] == pytest.approx(2.0)
    assert _measure(_rec("latency"), after_heal) == (None, [], [])


def test_a_fault_on_a_standby_measures_no_failover() -> None:
    failover, violations, notes = _measure(_rec("pause", target="c3"), [Delivery(11, 4, "p")])
    assert failover is None
    assert not violations
    assert "did not lead" in notes[0]


def test_a_stale_view_of_the_leader_measures_no_failover() -> None:
    # Epoch 5 issued before the fault, yet the observer still named epoch 3 leading.
    failover, violations, notes = _measure(
        _rec("kill"), [Delivery(9.0, 5, "p"), Delivery(10.1, 5, "p")]
    )
    assert failover is None
    assert not violations
    assert "its view lagged" in notes[0]


def test_no_recovery_is_a_violation_alone_and_a_note_under_other_faults() -> None:
    rec = _rec("kill")
    late = [Delivery(40.0, 4, "primary")]
    assert _measure(rec, late)[1] == ["kill c1: no recovery within 20s (new-epoch)"]
    quorum = _rec("zk-quorum-loss", at=12.0, healed=30.0, index=2)
    failover, violations, notes = _measure(rec, late, others=[quorum])
    assert failover is None
    assert not violations
    assert "while other faults held" in notes[0]


def test_a_skipped_fault_is_a_note() -> None:
    rec = _rec("kill")
    rec.error = "every connector already faulted"
    why = "kill c1: not injected: every connector already faulted"
    assert _measure(rec, []) == (None, [], [why])


def test_the_contract_counts_the_faults() -> None:
    result = ScenarioResult("random", seed=7, faults_planned=29, faults_injected=27)
    body = contract([result])["scenarios"]["random"]
    assert (body["seed"], body["faults_planned"], body["faults_injected"]) == (7, 29, 27)
    assert "faults_injected" not in contract([ScenarioResult("ca-down")])["scenarios"]["ca-down"]


# -- the command line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts"], "single-host"),
        (["--duration", "0"], "--duration"),
        (["--connectors", "1"], "--connectors"),
        (["--max-concurrent", "0"], "--max-concurrent"),
    ],
)
def test_random_refuses_bad_options_before_starting_anything(args: list[str], message: str) -> None:
    result = CliRunner().invoke(drill, ["--scenario", "random", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_cut_that_heals_before_a_handover_recovers_when_the_leader_issues_again() -> None:
    # The leader kept its lease through the cut (another fault left nobody better to
    # hand over to): it issues again under its epoch after the heal at 14.0; the
    # epoch change at 30.0 came from something else and is no recovery of this cut.
    for kind in ("ca-cut", "service-cut"):
        rec = _rec(kind)
        deliveries = [Delivery(12.0, 3, "primary"), Delivery(14.4, 3, "primary"),
                      Delivery(30.0, 4, "primary")]  # fmt: skip
        out = measure_fault(rec, [rec], deliveries, [LeaderChange(29.8, "c2", 4)],
                            secondary_ca="secondary", window_s=20)  # fmt: skip
        assert out.failover_s == pytest.approx(4.4)
        assert (out.new_epoch, out.new_leader) == (3, None)
        assert out.notes == [f"{kind} c1: the leader kept its lease and issued again 0.400s "
                             "after the heal"]  # fmt: skip


def test_a_cut_handed_over_before_its_heal_recovers_at_the_newer_epoch() -> None:
    rec = _rec("ca-cut")
    deliveries = [Delivery(12.5, 4, "primary"), Delivery(14.2, 3, "primary")]
    out = measure_fault(rec, [rec], deliveries, [LeaderChange(12.3, "c2", 4)],
                        secondary_ca="secondary", window_s=20)  # fmt: skip
    assert out.failover_s == pytest.approx(2.5)
    assert (out.new_epoch, out.new_leader, out.new_leader_s) == (4, "c2", pytest.approx(2.3))
    assert not out.notes
