"""Placement: the pfxha leader keeps off the host that carries the ZooKeeper leader.

    view = PlacementView(me="c1", leading=True, seat=ZkSeat.LEADER, seat_for_s=5.0,
                         line=line, leader="c1", seats={"c2": ZkSeat.FOLLOWER}, in_office_s=9.0,
                         min_s=2.0)
    decide_placement(view)   # Placement(Move.HAND_OVER, "... shares a host with ...", to="c2")

Why: a host crash that takes the ZooKeeper quorum leader with the pfxha leader
costs ``syncLimit`` + ZooKeeper's own election + a whole new session timeout
(the new quorum leader restarts every session's clock) before any standby may
take over, about 1.8 s with a 1.0 s session, against about 1.0 s when the
ZooKeeper leader survives (docs/chaos.md, "Hosts"). So a member that knows its
host's ZooKeeper server is the quorum leader (``srvr`` says ``Mode: leader``):

- as the leader, in office and on that seat for at least ``min_s``, hands the
  lease to the first standby in line whose own host's server is a follower,
  through the switchover path and within a placement budget of its own (the
  gray-failure yields keep theirs);
- as the first standby in line while someone leads, moves to the back of the
  line when a standby of the same priority on another host is behind it, so
  the successor is on another host before anything fails (no wait at
  succession: the lease is taken at once by whoever is first).

Never: when the lease is free (a deferral could leave the cluster leaderless
while the one deferred to is itself dying), when no other candidate is known to
sit on a follower's host (the only candidate, or every seat unknown), while
paused, or when the budget is spent. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from election._model import Candidate

__all__ = ["Move", "Placement", "PlacementView", "ZkSeat", "decide_placement", "parse_srvr"]


class ZkSeat(StrEnum):
    """What the ZooKeeper server on a member's host is, as its ``srvr`` says."""

    LEADER = "leader"  # the quorum leader (or a standalone server)
    FOLLOWER = "follower"  # a follower or an observer
    UNKNOWN = ""  # placement off, the server not answering, or not serving


class Move(StrEnum):
    STAY = "stay"
    HAND_OVER = "hand_over"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Placement:
    move: Move
    reason: str
    to: str | None = None


@dataclass(frozen=True)
class PlacementView:
    """What one member knows at one instant (line and leader from its last look)."""

    me: str
    leading: bool
    seat: ZkSeat
    # How long our host's server has said what ``seat`` says (ZooKeeper leaders move
    # rarely; one that just moved may move again).
    seat_for_s: float
    line: tuple[Candidate, ...]
    leader: str | None
    # The others' published seats; read from ZooKeeper only when a move is possible.
    seats: Mapping[str, ZkSeat] = field(default_factory=dict)
    in_office_s: float = 0.0
    min_s: float = 60.0
    paused: bool = False
    # The placement budget refused a hand-over a moment ago (the watch backs off).
    budget_refused: str | None = None


def parse_srvr(reply: str) -> ZkSeat:
    """The seat a ``srvr`` reply describes; UNKNOWN when it says none (not serving)."""
    for line in reply.splitlines():
        if line.startswith("Mode:"):
            mode = line.split(":", 1)[1].strip().lower()
            if mode in ("leader", "standalone"):
                return ZkSeat.LEADER
            if mode in ("follower", "observer"):
                return ZkSeat.FOLLOWER
    return ZkSeat.UNKNOWN


def decide_placement(v: PlacementView) -> Placement:
    """STAY, HAND_OVER (leader) or REQUEUE (first standby), with the reason."""
    if v.seat is not ZkSeat.LEADER:
        why = "a follower" if v.seat is ZkSeat.FOLLOWER else "not known"
        return Placement(Move.STAY, f"our host's ZooKeeper server is {why}")
    if v.paused:
        return Placement(Move.STAY, "paused: the lease stays where it is")
    if v.leading:
        return _as_leader(v)
    return _as_standby(v)


def _elsewhere(v: PlacementView, candidates: tuple[Candidate, ...]) -> Candidate | None:
    """The first of ``candidates`` known to sit on a ZooKeeper follower's host."""
    return next((c for c in candidates if v.seats.get(c.name) is ZkSeat.FOLLOWER), None)


def _as_leader(v: PlacementView) -> Placement:
    if v.in_office_s < v.min_s:
        return Placement(
            Move.STAY, f"in office {v.in_office_s:.1f}s, under {v.min_s:g}s: not moving yet"
        )
    if v.seat_for_s < v.min_s:
        return Placement(
            Move.STAY,
            f"our host's server leads ZooKeeper for {v.seat_for_s:.1f}s, under "
            f"{v.min_s:g}s: it may move again",
        )
    if v.budget_refused is not None:
        return Placement(Move.STAY, f"placement budget spent: {v.budget_refused}")
    standbys = tuple(c for c in v.line if c.name != v.me)
    to = _elsewhere(v, standbys)
    if to is None:
        what = "no standby in line" if not standbys else "no standby known to be on another host"
        return Placement(Move.STAY, f"shares a host with the ZooKeeper leader, but {what}")
    return Placement(
        Move.HAND_OVER,
        f"shares a host with the ZooKeeper leader: a crash of it would cost syncLimit, "
        f"ZooKeeper's election and a whole session; hand the lease to {to.name}",
        to=to.name,
    )


def _as_standby(v: PlacementView) -> Placement:
    if v.leader is None:
        return Placement(Move.STAY, "the lease is free: no deferring (never leaderless)")
    standbys = tuple(c for c in v.line if c.name != v.leader)
    if not standbys or standbys[0].name != v.me:
        return Placement(Move.STAY, "not the first standby in line")
    me = standbys[0]
    peers = tuple(c for c in standbys[1:] if c.priority == me.priority)
    behind = _elsewhere(v, peers)
    if behind is None:
        return Placement(Move.STAY, "first standby, and nobody known on another host behind")
    return Placement(
        Move.REQUEUE,
        f"first standby on the ZooKeeper leader's host: to the back of the line, so "
        f"{behind.name} succeeds",
        to=behind.name,
    )
