"""The gray-failure scenarios (issue 13): definitions, faults, leader_changes, its checker."""

from __future__ import annotations

from typing import Any, cast

import pytest

from chaos.checkers.leadership import check_leader_changes, count_leader_changes
from chaos.checkers.ops import LEADER, OBSERVER
from chaos.drill.engine import DrillEngine
from chaos.drill.observer import LeaderChange
from chaos.drill.result import RoundResult, ScenarioResult, contract
from chaos.drill.scenarios import ALL, ALL_HOSTS, SCENARIOS, parse_scenarios, with_blip
from chaos.history import History
from chaos.nemesis import CompositeFault, ProcessFault
from chaos.nemesis.link import Cascade

GRAY = ["service-cut", "ca-cut", "service-down", "cut-blip", "cascade"]


def _history(*leaders: tuple[str | None, int | None]) -> History:
    history = History()
    history.info("device-1", "enroll", {"device": "1"})  # not a leader event: ignored
    for name, epoch in leaders:
        history.info(OBSERVER, LEADER, {"name": name, "epoch": epoch})
    return history


def test_leader_changes_count_new_epochs_not_gaps_or_repeats() -> None:
    events = _history(("c1", 4), (None, None), ("c2", 5), ("c2", 5), ("c2", 6), ("c1", 7)).events
    assert count_leader_changes(events, baseline_epoch=4) == 3
    assert count_leader_changes(events, baseline_epoch=None) == 3  # the first seen is the base
    assert count_leader_changes(events, baseline_epoch=3) == 4
    assert count_leader_changes(_history(("c1", 4), (None, None)).events, baseline_epoch=4) == 0
    assert count_leader_changes([], baseline_epoch=4) == 0


def test_the_checker_fails_controls_that_move_the_lease_and_ping_pong() -> None:
    assert check_leader_changes(0, limit=0, what="cut-blip") == []
    [violation] = check_leader_changes(1, limit=0, what="service-down")
    assert "service-down" in violation
    assert "must move no lease" in violation
    assert check_leader_changes(2, limit=2, what="cascade") == []
    assert "ping-pong" in check_leader_changes(3, limit=2, what="cascade")[0]
    assert check_leader_changes(9, limit=None, what="connector-down") == []


def test_gray_scenarios_are_in_all_on_the_single_host_lab_only() -> None:
    assert ALL[-5:] == GRAY
    assert not set(GRAY) & set(ALL_HOSTS)
    assert all(SCENARIOS[n].needs_links for n in GRAY)
    assert not any(SCENARIOS[n].needs_links for n in ALL if n not in GRAY)
    assert [s.name for s in parse_scenarios("all", topology="hosts")] == ALL_HOSTS
    with pytest.raises(ValueError, match="drop --hosts"):
        parse_scenarios("connector-down,ca-cut", topology="hosts")


def test_gray_scenario_definitions() -> None:
    expected = {
        "service-cut": ("leader", True, 1),
        "ca-cut": ("leader", True, 1),
        "service-down": ("blocking", False, 0),
        "cut-blip": ("blip", False, 0),
        "cascade": ("cascade", True, 2),
    }
    for name, (kind, moves, limit) in expected.items():
        scenario = SCENARIOS[name]
        assert (scenario.kind, scenario.leader_change, scenario.max_leader_changes) == (
            kind,
            moves,
            limit,
        ), name
    assert SCENARIOS["cut-blip"].hold_s == 1.0
    assert SCENARIOS["service-down"].hold_s > SCENARIOS["cut-blip"].hold_s
    assert with_blip(SCENARIOS["cut-blip"], 0.4).hold_s == 0.4
    assert "0.4 s" in with_blip(SCENARIOS["cut-blip"], 0.4).summary
    assert with_blip(SCENARIOS["service-down"], 0.4) is SCENARIOS["service-down"]
    with pytest.raises(ValueError, match="more than 0"):
        with_blip(SCENARIOS["cut-blip"], 0.0)


class FakeLab:
    primary_ca = "primary"
    secondary_ca = "secondary"

    def __init__(self) -> None:
        self.cuts: list[tuple[str, tuple[str, ...], str]] = []

    def connector_names(self) -> list[str]:
        return ["c1", "c2", "c3"]

    def leader_now(self) -> tuple[str | None, int | None]:
        return "c1", 5

    def link_cut(self, connector: str, targets: tuple[str, ...], mode: str) -> ProcessFault:
        self.cuts.append((connector, targets, mode))
        return ProcessFault(f"cut {connector}", lambda: None)


def test_the_faults_each_scenario_builds() -> None:
    lab = FakeLab()
    target = cast(Any, lab)
    SCENARIOS["service-cut"].build(target, "c1")
    SCENARIOS["ca-cut"].build(target, "c1")
    SCENARIOS["cut-blip"].build(target, "c2")
    assert lab.cuts == [
        ("c1", ("service",), "blackhole"),
        ("c1", ("ca:*",), "blackhole"),
        ("c2", ("service",), "blackhole"),
    ]
    down = SCENARIOS["service-down"].build(target, "c1")
    assert isinstance(down, CompositeFault)
    assert len(down.parts) == 3
    assert [c[0] for c in lab.cuts[3:]] == ["c1", "c2", "c3"]
    cascade = SCENARIOS["cascade"].build(target, "c1")
    assert isinstance(cascade, Cascade)
    assert (cascade.first, cascade.above_epoch) == ("c1", 5)


def test_leader_changes_join_the_json_contract() -> None:
    result = ScenarioResult("cut-blip", rounds=[RoundResult("cut-blip", 1, fault_at=1.0)])
    result.leader_changes = 1
    body = contract([result])["scenarios"]["cut-blip"]
    assert body["leader_changes"] == 1
    assert {"rounds", "failover_s", "violations", "requests", "duplicates"} <= set(body)


class FakeObserver:
    def __init__(self, changes: list[LeaderChange], issued: list[Any]) -> None:
        self.changes = changes
        self.issued = issued

    def to_history_time(self, unix: float) -> float:
        return unix

    def issued_after(self, at: float) -> list[Any]:
        return [r for r in self.issued if r.issued >= at]


def test_cascade_recovers_only_with_the_third_leaders_certificate() -> None:
    from chaos.checkers.state import IssuedRow

    changes = [LeaderChange(1.0, "c1", 5), LeaderChange(10.2, "c2", 6)]
    issued = [IssuedRow("a", 10.0, 10.4, 6, "primary", "c2")]
    observer = FakeObserver(changes, issued)
    engine = DrillEngine(
        cast(Any, FakeLab()), History(), cast(Any, observer), cast(Any, None), cast(Any, None)
    )
    cascade = SCENARIOS["cascade"]
    assert engine._recovered(cascade, 5, 10.0) is None  # c2 worked, then was cut too
    assert engine._recovered(SCENARIOS["service-cut"], 5, 10.0) == issued[0]
    changes.append(LeaderChange(11.0, "c3", 7))
    issued.append(IssuedRow("b", 10.9, 11.3, 7, "primary", "c3"))
    row = engine._recovered(cascade, 5, 10.0)
    assert row is not None
    assert row.request == "b"
    db = cast(Any, type("Db", (), {"registrations": lambda self: {}})())
    engine.db = db
    outcome = RoundResult("cascade", 1, fault_at=10.0, old_leader="c1", old_epoch=5)
    engine._measure(outcome, cascade, row, healed_at=12.0)
    assert (outcome.new_leader, outcome.new_epoch, outcome.failover_s) == ("c3", 7, 1.3)
    assert outcome.violations == []
