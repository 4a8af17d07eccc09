"""Every rule of the pure election decision, without a server."""

from __future__ import annotations

from dataclasses import replace

import pytest

from election._decide import Action, Snapshot, decide
from election._model import Candidate, LeaderInfo, Role, SwitchoverRequest


def cand(name: str, seq: int, priority: int = 0) -> Candidate:
    node = f"{Candidate.prefix(name, priority)}{seq:010d}"
    parsed = Candidate.parse(node)
    assert parsed is not None
    return parsed


C1, C2, C3 = cand("c1", 1), cand("c2", 2), cand("c3", 3)
LINE = (C1, C2, C3)
LEADER_C1 = LeaderInfo("c1", 7, "now", liveness="127.0.0.1:1", czxid=100, session_id=11)


def snap(**kw: object) -> Snapshot:
    base = Snapshot(
        me="c2",
        eligible=True,
        role=Role.STANDBY,
        connected=True,
        my_node=C2.node,
        line=LINE,
        leader=LEADER_C1,
        leader_is_mine=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_candidate_parses_names_with_dashes_and_negative_priority() -> None:
    c = cand("conn-a-p1", 5, priority=-3)
    assert (c.name, c.priority, c.seq) == ("conn-a-p1", -3, 5)
    assert Candidate.parse("garbage") is None


def test_line_orders_by_priority_then_arrival() -> None:
    assert sorted([cand("a", 1), cand("b", 2, priority=5), cand("c", 0)]) == [
        cand("b", 2, priority=5),
        cand("c", 0),
        cand("a", 1),
    ]


def test_disconnected_member_does_nothing() -> None:
    assert decide(snap(connected=False, leader=None)).action is Action.WAIT


def test_standby_waits_while_someone_leads() -> None:
    assert decide(snap()).action is Action.WAIT


def test_first_in_line_takes_a_free_lease_others_wait() -> None:
    assert decide(snap(me="c1", my_node=C1.node, leader=None)).action is Action.TAKE
    assert decide(snap(leader=None)).action is Action.WAIT


def test_member_outside_the_line_joins_unless_nofailover_or_holding_off() -> None:
    assert decide(snap(my_node=None, line=(C1, C3))).action is Action.JOIN
    nofail = decide(snap(my_node=None, eligible=False, line=(C1, C3), leader=None))
    assert nofail.action is Action.WAIT
    assert "nofailover" in nofail.reason
    assert decide(snap(my_node=None, holdoff=True, leader=None)).action is Action.WAIT


def test_switchover_target_takes_before_the_first_in_line() -> None:
    request = SwitchoverRequest(to="c3", requested_at="t")
    assert decide(snap(me="c1", my_node=C1.node, leader=None, switchover=request)).action is (
        Action.WAIT
    )
    assert decide(snap(me="c3", my_node=C3.node, leader=None, switchover=request)).action is (
        Action.TAKE
    )


def test_switchover_to_a_member_not_in_line_falls_back_to_the_line_order() -> None:
    request = SwitchoverRequest(to="gone", requested_at="t")
    assert decide(snap(me="c1", my_node=C1.node, leader=None, switchover=request)).action is (
        Action.TAKE
    )


def leader_snap(**kw: object) -> Snapshot:
    me = LeaderInfo("c1", 7, "now", czxid=100, session_id=11)
    base = snap(me="c1", my_node=C1.node, role=Role.LEADER, leader=me, leader_is_mine=True)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_leader_confirms_while_everything_checks_out() -> None:
    assert decide(leader_snap()).action is Action.CONFIRM


def test_leader_steps_down_when_lease_or_election_node_disappears() -> None:
    assert decide(leader_snap(leader=None, leader_is_mine=False)).action is Action.STEP_DOWN
    assert decide(leader_snap(my_node=None)).action is Action.STEP_DOWN


def test_leader_releases_for_switchover_to_an_eligible_member_or_anyone() -> None:
    to_c2 = SwitchoverRequest(to="c2", requested_at="t")
    assert decide(leader_snap(switchover=to_c2)).action is Action.RELEASE
    anyone = SwitchoverRequest(to=None, requested_at="t")
    assert decide(leader_snap(switchover=anyone)).action is Action.RELEASE


def test_leader_drops_switchover_it_cannot_honour() -> None:
    to_self = SwitchoverRequest(to="c1", requested_at="t")
    assert decide(leader_snap(switchover=to_self)).action is Action.DROP_SWITCHOVER
    unknown = SwitchoverRequest(to="nope", requested_at="t")
    assert decide(leader_snap(switchover=unknown)).action is Action.DROP_SWITCHOVER


def test_explicit_release_request() -> None:
    assert decide(leader_snap(release_requested="operator")).action is Action.RELEASE


def test_reconnected_member_whose_lease_survived_resumes() -> None:
    s = leader_snap(role=Role.SUSPENDED)
    assert decide(s).action is Action.RESUME
    assert decide(replace(s, my_node=None)).action is Action.STEP_DOWN


def test_only_the_first_standby_clears_a_crashed_leader() -> None:
    dead = LEADER_C1
    assert decide(snap(dead_leader=dead)).action is Action.CLEAR_DEAD
    assert decide(snap(me="c3", my_node=C3.node, dead_leader=dead)).action is Action.WAIT


def test_a_report_about_an_older_leader_node_is_ignored() -> None:
    stale = replace(LEADER_C1, czxid=99)
    assert decide(snap(dead_leader=stale)).action is Action.WAIT


@pytest.mark.parametrize("role", [Role.STANDBY, Role.SUSPENDED])
def test_a_non_leader_never_confirms_or_releases(role: Role) -> None:
    assert decide(snap(role=role)).action not in (Action.CONFIRM, Action.RELEASE)


def test_a_report_about_another_liveness_incarnation_is_ignored() -> None:
    # Same /leader node, but the leader resumed with a new liveness socket since.
    current = replace(LEADER_C1, incarnation="new")
    stale = replace(LEADER_C1, incarnation="old")
    assert decide(snap(leader=current, dead_leader=stale)).action is Action.WAIT
    assert decide(snap(leader=current, dead_leader=current)).action is Action.CLEAR_DEAD


# -- maintenance (`pfxha pause`) -----------------------------------------------------------


def test_paused_standby_does_not_take_a_free_lease() -> None:
    decision = decide(snap(me="c1", my_node=C1.node, leader=None, paused=True))
    assert decision.action is Action.WAIT
    assert "paused" in decision.reason
    assert decide(snap(me="c1", my_node=C1.node, leader=None)).action is Action.TAKE


def test_paused_standby_reports_a_crashed_leader_instead_of_clearing_it() -> None:
    crashed = snap(dead_leader=LEADER_C1, paused=True)
    decision = decide(crashed)
    assert decision.action is Action.WAIT
    assert "paused" in decision.reason
    assert "c1" in decision.reason
    assert "process is gone" in decision.reason
    assert decide(replace(crashed, paused=False)).action is Action.CLEAR_DEAD


def test_paused_leader_keeps_leading_and_a_paused_member_still_joins_the_line() -> None:
    mine = replace(LEADER_C1, name="c2")
    leading = snap(role=Role.LEADER, leader=mine, leader_is_mine=True, paused=True)
    assert decide(leading).action is Action.CONFIRM
    assert decide(snap(my_node=None, paused=True)).action is Action.JOIN


def test_paused_standby_leaves_a_forged_leader_alone() -> None:
    forged = snap(me="c2", leader=LEADER_C1, leader_persistent=True, paused=True)
    assert decide(forged).action is Action.WAIT
