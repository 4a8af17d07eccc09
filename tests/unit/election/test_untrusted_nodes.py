"""Coordination data is untrusted input: what the pure rules do with forged or garbled nodes."""

from __future__ import annotations

import pytest

from election._decide import Action, decide
from election._epoch import MAX_EPOCH, EpochCounter, parse_epoch
from election._model import LeaderInfo, Role, SwitchoverRequest
from tests.unit.election.test_decide import C1, C2, snap


@pytest.mark.parametrize(
    "raw",
    [b"abc", b"-5", b"1.5", b"", b"4611686018427387904", b"\xff\xfe", b" 12 x", b"9" * 400],
)
def test_an_epoch_counter_that_is_not_a_bounded_integer_is_not_believed(raw: bytes) -> None:
    value, problem = parse_epoch(raw)
    if raw == b"":  # an empty node is the counter's initial state
        assert (value, problem) == (0, None)
        return
    assert value is None
    assert problem is not None
    assert "/epoch" in problem


def test_a_bad_counter_counts_on_past_every_epoch_seen_and_its_version() -> None:
    counter = EpochCounter()
    counter.saw(404)
    counter.missed()  # force a read
    assert counter.for_cas(lambda: (b"abc", 410)) == (410, 410)
    assert counter.problem is not None
    counter.missed()
    assert counter.for_cas(lambda: (str(2**62).encode(), 12)) == (404, 12)
    counter.committed(405, 13)
    assert counter.problem is None


def test_a_counter_set_back_below_a_seen_epoch_counts_on_from_that_epoch() -> None:
    counter = EpochCounter()
    counter.saw(404)
    counter.missed()
    assert counter.for_cas(lambda: (b"3", 405)) == (404, 405)
    assert counter.problem is not None
    assert "went back" in counter.problem


def test_guesses_stay_inside_the_version_range_kazoo_can_send() -> None:
    counter = EpochCounter()
    counter.saw(2**40)  # a leader epoch above int32 (believable, but no version guess)
    reads: list[int] = []

    def read() -> tuple[bytes, int]:
        reads.append(1)
        return str(2**40).encode(), 3

    assert counter.for_cas(read) == (2**40, 3)
    assert reads == [1]
    counter.saw(MAX_EPOCH + 1)  # beyond the bound: ignored, not a floor
    assert counter.highest_seen == 2**40


def test_a_leader_node_of_ours_overwritten_with_garbage_is_rewritten() -> None:
    decision = decide(
        snap(
            me="c1",
            my_node=C1.node,
            role=Role.LEADER,
            leader=None,
            leader_is_mine=True,
            leader_garbled=True,
        )
    )
    assert decision.action is Action.RESUME
    assert "unreadable" in decision.reason


def test_a_standby_waits_on_someone_elses_garbled_leader_node_instead_of_racing_it() -> None:
    decision = decide(snap(leader=None, leader_garbled=True))
    assert decision.action is Action.WAIT
    assert "unreadable" in decision.reason


def test_a_persistent_leader_node_is_forged_and_the_first_in_line_clears_it() -> None:
    forged = LeaderInfo("c9", 999, "now", czxid=5, session_id=0)
    first = snap(me="c1", my_node=C1.node, leader=forged, leader_persistent=True)
    assert decide(first).action is Action.CLEAR_FORGED
    second = snap(me="c2", my_node=C2.node, leader=forged, leader_persistent=True)
    assert decide(second).action is Action.WAIT


def test_an_unreadable_switchover_request_is_dropped_not_taken_as_switch_to_anyone() -> None:
    request = SwitchoverRequest.parse(b"[1, 2]", version=3)
    assert not request.readable
    leader = snap(
        me="c1", my_node=C1.node, role=Role.LEADER, leader_is_mine=True, switchover=request
    )
    decision = decide(leader)
    assert decision.action is Action.DROP_SWITCHOVER


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "c1", "epoch": 7, "liveness": {"host": 1}}',
        b'{"name": "c1", "epoch": 7, "node": ["x"]}',
        b"[" * 100_000,
        b'{"name": "c1", "epoch": Infinity}',
    ],
)
def test_leader_content_of_the_wrong_shape_never_reaches_the_probe(raw: bytes) -> None:
    info = LeaderInfo.parse(raw)
    assert info is None or (info.liveness is None and info.node is None)
