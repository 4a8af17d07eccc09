"""Placement's pure rule, the srvr parse and the colocated-server choice, without a server."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from election._config import ElectionConfig
from election._decide import Action, Snapshot, decide
from election._errors import ConfigError
from election._model import Candidate, LeaderInfo, Role
from election._placement import Move, PlacementView, ZkSeat, decide_placement, parse_srvr
from election._zk_seat import colocated_server, is_local_address, read_seat

F, L, U = ZkSeat.FOLLOWER, ZkSeat.LEADER, ZkSeat.UNKNOWN


def cand(name: str, seq: int, priority: int = 0) -> Candidate:
    parsed = Candidate.parse(f"{Candidate.prefix(name, priority)}{seq:010d}")
    assert parsed is not None
    return parsed


LINE = (cand("c1", 1), cand("c2", 2), cand("c3", 3))


def leader_view(**kw: object) -> PlacementView:
    base = PlacementView(
        me="c1",
        leading=True,
        seat=L,
        seat_for_s=10.0,
        line=LINE,
        leader="c1",
        seats={"c2": F, "c3": F},
        in_office_s=10.0,
        min_s=2.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def standby_view(**kw: object) -> PlacementView:
    base = {"me": "c2", "leading": False, "seats": {"c1": F, "c3": F}, "in_office_s": 0.0}
    return leader_view(**(base | kw))


# -- srvr ---------------------------------------------------------------------------------


def test_srvr_modes_map_to_seats() -> None:
    reply = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.1/3\nMode: {}\nNode count: 9\n"
    assert parse_srvr(reply.format("leader")) is L
    assert parse_srvr(reply.format("standalone")) is L
    assert parse_srvr(reply.format("follower")) is F
    assert parse_srvr(reply.format("observer")) is F
    assert parse_srvr("This ZooKeeper instance is not currently serving requests\n") is U
    assert parse_srvr("") is U


def test_a_server_that_does_not_answer_is_an_unknown_seat() -> None:
    with socket.socket() as sock:  # bound, never listening: the connect is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert read_seat(f"127.0.0.1:{port}", timeout=0.5) is U


# -- the leader ---------------------------------------------------------------------------


def test_a_leader_on_a_follower_host_stays() -> None:
    assert decide_placement(leader_view(seat=F)).move is Move.STAY
    assert decide_placement(leader_view(seat=U)).move is Move.STAY


def test_a_leader_on_the_zookeeper_leaders_host_hands_over_to_the_first_standby_elsewhere() -> None:
    d = decide_placement(leader_view(seats={"c2": U, "c3": F}))
    assert (d.move, d.to) == (Move.HAND_OVER, "c3")
    assert "shares a host with the ZooKeeper leader" in d.reason


def test_a_leader_hands_over_only_after_min_time_in_office_and_on_the_seat() -> None:
    too_new = decide_placement(leader_view(in_office_s=1.9))
    assert too_new.move is Move.STAY
    assert "in office" in too_new.reason
    moved_lately = decide_placement(leader_view(seat_for_s=0.5))
    assert moved_lately.move is Move.STAY
    assert "may move again" in moved_lately.reason


def test_a_spent_budget_or_a_pause_keeps_the_lease() -> None:
    spent = decide_placement(leader_view(budget_refused="4 in the last 60s"))
    assert spent.move is Move.STAY
    assert "budget" in spent.reason
    assert decide_placement(leader_view(paused=True)).move is Move.STAY


def test_the_only_candidate_or_standbys_of_unknown_seat_keep_the_lease() -> None:
    alone = decide_placement(leader_view(line=LINE[:1], seats={}))
    assert alone.move is Move.STAY
    assert "no standby in line" in alone.reason
    unknown = decide_placement(leader_view(seats={"c2": U, "c3": L}))
    assert unknown.move is Move.STAY
    assert "no standby known" in unknown.reason


# -- standbys -----------------------------------------------------------------------------


def test_the_first_standby_on_the_zookeeper_leaders_host_goes_to_the_back() -> None:
    d = decide_placement(standby_view())
    assert (d.move, d.to) == (Move.REQUEUE, "c3")


def test_a_standby_never_defers_with_the_lease_free() -> None:
    d = decide_placement(standby_view(leader=None))
    assert d.move is Move.STAY
    assert "never leaderless" in d.reason


def test_only_the_first_standby_moves_and_only_ahead_of_a_peer_elsewhere() -> None:
    third = standby_view(me="c3", seats={"c1": F, "c2": F})
    assert decide_placement(third).move is Move.STAY  # not the first standby
    assert decide_placement(standby_view(seats={"c1": F, "c3": U})).move is Move.STAY
    lower = (cand("c1", 1), cand("c2", 2, priority=1), cand("c3", 3))
    # Behind it only by priority: moving back would not put c3 ahead.
    assert decide_placement(standby_view(line=lower)).move is Move.STAY


@settings(max_examples=50)
@given(st.lists(st.sampled_from([F, L, U]), min_size=2, max_size=6))
def test_requeues_end_and_leave_a_follower_seat_first_when_one_is_in_line(
    seats: list[ZkSeat],
) -> None:
    """Leader c0 (a follower's host); standbys with these seats, requeued until nobody moves.

    Whatever the seats (two members claiming the leader's seat is a misconfiguration),
    it ends, and a standby known to be on a follower's host is first if there is one.
    """
    line = [cand("c0", 0)] + [cand(f"c{i + 1}", i + 1) for i in range(len(seats))]
    seat_of = {"c0": F} | {f"c{i + 1}": s for i, s in enumerate(seats)}
    seq = len(line)
    for _ in range(3 * len(line)):
        first = line[1]
        view = PlacementView(
            me=first.name,
            leading=False,
            seat=seat_of[first.name],
            seat_for_s=99.0,
            line=tuple(line),
            leader="c0",
            seats={n: s for n, s in seat_of.items() if n != first.name},
        )
        if decide_placement(view).move is not Move.REQUEUE:
            break
        seq += 1
        line = [c for c in line if c.name != first.name] + [cand(first.name, seq)]
    else:
        raise AssertionError(f"requeues did not end: {[c.name for c in line]}")
    if F in seats:
        assert seat_of[line[1].name] is not L


# -- the election's side ------------------------------------------------------------------


LEADER_C1 = LeaderInfo("c1", 7, "now", liveness="127.0.0.1:1", czxid=100, session_id=11)


def snap(**kw: object) -> Snapshot:
    base = Snapshot(
        me="c2",
        eligible=True,
        role=Role.STANDBY,
        connected=True,
        my_node=LINE[1].node,
        line=LINE,
        leader=LEADER_C1,
        leader_is_mine=False,
        requeue="first standby on the ZooKeeper leader's host",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_the_election_requeues_only_while_someone_else_leads() -> None:
    assert decide(snap()).action is Action.REQUEUE
    assert decide(snap(leader=None, line=LINE[1:])).action is Action.TAKE  # free: take it
    assert decide(snap(paused=True)).action is Action.WAIT
    dead = decide(snap(dead_leader=LEADER_C1, line=(LINE[1], LINE[0], LINE[2])))
    assert dead.action is Action.CLEAR_DEAD  # a crashed leader is cleared, not queued behind


# -- which server is ours -----------------------------------------------------------------

HOSTS = "10.9.0.1:2181,10.9.0.2:2181,10.9.0.3:2181"


def test_colocated_server_off_explicit_and_auto() -> None:
    assert colocated_server("", HOSTS)[0] is None
    assert colocated_server("zk2:2181", HOSTS)[0] == "zk2:2181"
    mine = colocated_server("auto", HOSTS, is_local=lambda host: host == "10.9.0.2")
    assert mine == ("10.9.0.2:2181", "10.9.0.2 is an address of this host")


def test_auto_turns_placement_off_unless_exactly_one_server_is_local() -> None:
    none, why = colocated_server("auto", HOSTS, is_local=lambda _host: False)
    assert none is None
    assert "no ZooKeeper server" in why
    # One host's loopback (the single-host lab), or ip_nonlocal_bind: every server binds.
    many, why = colocated_server("auto", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3")
    assert many is None
    assert "3 ZooKeeper servers bind as local" in why


def test_only_this_hosts_addresses_bind() -> None:
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.1")  # TEST-NET-1: assigned to no host
    assert not is_local_address("no-such-host.invalid")


def test_placement_settings_are_validated() -> None:
    base = ElectionConfig(hosts=HOSTS, cluster="lab", name="c1")
    assert base.colocated_server == ""  # off by default
    for kw, setting in (
        ({"colocated_server": "zk1"}, "colocated_server"),
        ({"placement_min_in_office": -1.0}, "placement_min_in_office"),
        ({"placement_budget": -1}, "placement_budget"),
        ({"placement_budget_window": 0.0}, "placement_budget_window"),
        ({"placement_probe_interval": 0.0}, "placement_probe_interval"),
    ):
        with pytest.raises(ConfigError) as caught:
            replace(base, **kw).validate()  # type: ignore[arg-type]
        assert caught.value.setting == setting
    replace(base, colocated_server="auto").validate()
    replace(base, colocated_server="zk1.example:2181").validate()
