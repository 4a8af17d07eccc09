"""How a round's numbers come out of what the observer saw (no servers)."""

from __future__ import annotations

from typing import Any, cast

from chaos.checkers.state import IssuedRow
from chaos.drill.engine import DrillEngine
from chaos.drill.observer import LeaderChange
from chaos.drill.result import RoundResult
from chaos.drill.scenarios import SCENARIOS
from chaos.history import History
from chaos.launch import LaunchError

# Observer times are history times; service times are "Unix" times. Here the
# two clocks differ by a fixed 1000 s, so a conversion bug shows.
OFFSET = 1000.0


class FakeObserver:
    def __init__(self, changes: list[LeaderChange], issued: list[IssuedRow]) -> None:
        self.changes = changes
        self.issued = issued

    def to_history_time(self, unix: float) -> float:
        return unix - OFFSET

    def issued_after(self, at: float) -> list[IssuedRow]:
        return [r for r in self.issued if self.to_history_time(r.issued) >= at]


class FakeDb:
    def __init__(self, registrations: dict[str, tuple[int, float | None]]) -> None:
        self._registrations = registrations

    def registrations(self) -> dict[str, tuple[int, float | None]]:
        return self._registrations


class FakeLab:
    primary_ca = "primary"
    secondary_ca = "secondary"


def _engine(observer: FakeObserver, db: FakeDb) -> DrillEngine:
    return DrillEngine(
        cast(Any, FakeLab()), History(), cast(Any, observer), cast(Any, None), cast(Any, db)
    )


def _waiting_engine(lab: object, observer: object) -> DrillEngine:
    """An engine for the steady-state waits alone: no workload, no service DB, no sleep."""
    return DrillEngine(
        cast(Any, lab), History(), cast(Any, observer), cast(Any, None), cast(Any, None),
        sleep=lambda _: None,
    )  # fmt: skip


def _led_by(name: str, epoch: int) -> FakeObserver:
    observer = FakeObserver([], [])
    observer.leader = LeaderChange(0.0, name, epoch)  # type: ignore[attr-defined]
    return observer


def _row(request: str, created: float, issued: float, epoch: int, ca: str) -> IssuedRow:
    return IssuedRow(request, created + OFFSET, issued + OFFSET, epoch, ca, "c2")


def _ca_round(
    name: str, rows: list[IssuedRow], healed_at: float
) -> tuple[DrillEngine, IssuedRow | None, RoundResult]:
    """A CA scenario's round 1 (fault at 10.0, c1 leading under epoch 2): its engine,
    the row that counts as recovery, and the round measured with it."""
    engine = _engine(FakeObserver([LeaderChange(1.0, "c1", 2)], rows), FakeDb({}))
    recovered = engine._recovered(SCENARIOS[name], 2, 10.0)
    outcome = RoundResult(name, 1, fault_at=10.0, old_leader="c1", old_epoch=2)
    engine._measure(outcome, SCENARIOS[name], recovered, healed_at=healed_at)
    return engine, recovered, outcome


def test_leader_failover_runs_from_the_fault_to_the_new_epochs_first_certificate() -> None:
    observer = FakeObserver(
        changes=[
            LeaderChange(5.0, "c1", 3),
            LeaderChange(10.02, None, None),
            LeaderChange(10.05, "c2", 4),
        ],
        issued=[
            _row("late-old", 9.9, 10.01, 3, "primary"),  # the old leader's last upload
            _row("r1", 9.95, 10.40, 4, "primary"),
            _row("r2", 10.30, 10.45, 4, "primary"),
        ],
    )
    engine = _engine(observer, FakeDb({"c2": (4, 10.08 + OFFSET)}))
    scenario = SCENARIOS["connector-down"]
    outcome = RoundResult("connector-down", 1, fault_at=10.0, old_leader="c1", old_epoch=3)
    recovered = engine._recovered(scenario, 3, 10.0)
    assert recovered is not None
    assert recovered.request == "r1"
    engine._measure(outcome, scenario, recovered, healed_at=12.0)
    assert (outcome.new_leader, outcome.new_epoch) == ("c2", 4)
    assert outcome.new_leader_s == 0.05
    assert outcome.registered_s == 0.08
    assert outcome.failover_s == 0.4
    assert outcome.first_delivery_s == 0.4
    assert outcome.delayed_requests == 3  # every one created before the recovery at 10.40
    assert outcome.worst_latency_s == 0.45
    assert outcome.violations == []


def test_ca_failover_waits_for_the_other_ca() -> None:
    rows = [_row("p", 9.0, 10.1, 2, "primary"), _row("s", 10.0, 10.3, 2, "secondary")]
    _, recovered, outcome = _ca_round("ca-down", rows, healed_at=11.0)
    assert recovered is not None
    assert recovered.request == "s"
    assert outcome.other_ca_s == 0.3
    assert outcome.failover_s == 0.3
    assert outcome.new_leader is None
    assert outcome.violations == []  # no leader change expected


def test_blocking_faults_measure_from_the_heal_and_missing_recovery_is_a_violation() -> None:
    observer = FakeObserver(
        changes=[LeaderChange(1.0, "c1", 2)], issued=[_row("r", 10.0, 13.25, 2, "primary")]
    )
    engine = _engine(observer, FakeDb({}))
    scenario = SCENARIOS["zk-quorum-loss"]
    outcome = RoundResult("zk-quorum-loss", 1, fault_at=10.0, old_leader="c1", old_epoch=2)
    engine._measure(outcome, scenario, engine._recovered(scenario, 2, 13.0), healed_at=13.0)
    assert outcome.failover_s == 0.25
    assert outcome.first_delivery_s == 3.25

    lost = RoundResult("connector-down", 2, fault_at=20.0, old_leader="c1", old_epoch=2)
    engine._measure(lost, SCENARIOS["connector-down"], None, healed_at=21.0)
    assert "no new leader within 20s of the fault" in lost.violations
    assert any(v.startswith("no recovery within") for v in lost.violations)
    assert lost.failover_s is None


def test_a_node_loss_served_by_the_next_ca_is_no_violation_without_a_patience() -> None:
    rows = [
        _row("before", 9.0, 10.05, 2, "primary"),  # created before the fault: not counted
        _row("s", 10.1, 10.25, 2, "secondary"),
        _row("p", 15.3, 15.4, 2, "primary"),  # the primary back after its breaker reset
    ]
    # The connectors' default: failover_patience_s 0.
    engine, recovered, outcome = _ca_round("ca-node-loss", rows, healed_at=14.0)
    assert recovered is not None
    assert recovered.request == "s"
    assert (outcome.failover_s, outcome.other_ca_s) == (0.25, 0.25)
    assert outcome.violations == []

    engine.settings.ca_patience_s = 5.0  # connectors told to wait elections out
    patient = RoundResult("ca-node-loss", 2, fault_at=10.0, old_leader="c1", old_epoch=2)
    engine._measure(patient, SCENARIOS["ca-node-loss"], recovered, healed_at=14.0)
    assert any("within the 5s patience" in v for v in patient.violations)


def test_a_stalled_node_recovers_only_when_the_primary_ca_signs_again() -> None:
    rows = [
        _row("s", 10.1, 10.25, 2, "secondary"),  # the next CA served: not the recovery
        _row("p", 15.3, 16.5, 2, "primary"),  # the cluster's new active node signed
    ]
    _, recovered, outcome = _ca_round("ca-node-stall", rows, healed_at=17.0)
    assert recovered is not None
    assert recovered.request == "p"
    assert outcome.failover_s == 6.5
    assert outcome.violations == []

    _, only_next, _ = _ca_round("ca-node-stall", rows[:1], healed_at=17.0)
    assert only_next is None


def test_the_clusters_own_election_is_polled_until_it_has_an_active_node() -> None:
    answers: list[str | None] = [None, None, "bao2"]

    class ElectingLab(FakeLab):
        def ca_active_node(self, name: str) -> str:
            assert name == "primary"
            found = answers.pop(0)
            if found is None:
                raise LaunchError("CA primary: its OpenBao cluster has no active node")
            return found

    sleeps: list[float] = []
    history = History()
    engine = DrillEngine(
        cast(Any, ElectingLab()), history, cast(Any, None), cast(Any, None), cast(Any, None),
        sleep=sleeps.append,
    )  # fmt: skip
    t0 = history.now()
    elected = engine._wait_ca_elected(t0, poll_s=0.05)
    assert elected is not None
    assert elected >= 0
    assert (answers, sleeps) == ([], [0.05, 0.05])


def test_a_round_waits_until_placement_has_moved_the_leader_off_the_zookeeper_leaders_host() -> (
    None
):
    class PlacingObserver(FakeObserver):
        def __init__(self) -> None:
            super().__init__([], [_row("r", 0.0, 0.1, 2, "primary")])
            self.leader = LeaderChange(0.0, "c1", 2)
            self.active = ["c1"]

    class PlacingLab(FakeLab):
        """c1 shares a host with the ZooKeeper leader until placement moves the lease."""

        def __init__(self, observer: PlacingObserver) -> None:
            self.observer = observer
            self.looks = 0

        def placed(self, connector: str) -> bool:
            self.looks += 1
            if self.looks == 3:  # the move: c2 leads under a new epoch and delivers
                self.observer.leader = LeaderChange(1.0, "c2", 3)
                self.observer.active = ["c2"]
                self.observer.issued.append(_row("r2", 1.0, 1.1, 3, "primary"))
            return connector != "c1"

    observer = PlacingObserver()
    lab = PlacingLab(observer)
    engine = _waiting_engine(lab, observer)
    assert engine._wait_placed()
    assert observer.leader.name == "c2"
    assert lab.looks == 4

    engine.settings.settle_timeout = 0.0
    observer.leader = LeaderChange(2.0, "c1", 4)
    assert not engine._wait_placed()  # never moved: the round goes on with a note


def test_a_round_waits_until_every_standbys_key_pool_is_full() -> None:
    class PoolLab(FakeLab):
        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        def connector_members(self) -> list[str]:
            return ["c1", "c2", "c3"]

        def key_pools_full(self, connectors: list[str]) -> bool:
            self.asked.append(connectors)
            return len(self.asked) >= 3  # c3, restarted, fills its pool

    observer = _led_by("c1", 2)
    lab = PoolLab()
    engine = _waiting_engine(lab, observer)
    assert engine._wait_standbys_ready()
    assert lab.asked == [["c2", "c3"]] * 3  # the leader's own pool is drained by its work


def test_a_round_waits_until_every_standby_is_back_in_the_election_line() -> None:
    class LineLab(FakeLab):
        """c3 handed the lease over a moment ago: out of the line for its hold-down."""

        def __init__(self) -> None:
            self.looks = 0

        def members_out_of_line(self) -> set[str]:
            self.looks += 1
            return set() if self.looks >= 3 else {"c3"}

    observer = _led_by("c1", 2)
    lab = LineLab()
    engine = _waiting_engine(lab, observer)
    assert engine._wait_standbys_in_line()
    assert lab.looks == 3

    # The leader itself need not be in line (it holds the lease): c3 leads, and the
    # line without it is steady at the first look.
    observer.leader = LeaderChange(1.0, "c3", 3)  # type: ignore[attr-defined]
    lab.looks = 0
    assert engine._wait_standbys_in_line()
    assert lab.looks == 1

    # A standby that never comes back lets the round go on, with a note.
    engine.settings.settle_timeout = 0.0
    observer.leader = LeaderChange(2.0, "c1", 4)  # type: ignore[attr-defined]
    lab.looks = 0
    assert not engine._wait_standbys_in_line()
