"""The election's brain: a pure function from an immutable snapshot to a decision.

    snapshot = Snapshot(me="c1", eligible=True, role=Role.STANDBY, connected=True,
                        my_node="m-c1-p0-0000000004", line=(...), leader=None, ...)
    decision = decide(snapshot)       # Decision(Action.TAKE, "first in line, no leader")

Everything that talks to ZooKeeper lives in the executor (``_elector.py``); this
module only reasons, so every rule is unit-tested without a server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from election._model import Candidate, LeaderInfo, Role, SwitchoverRequest

__all__ = [
    "Action",
    "Decision",
    "Snapshot",
    "decide",
    "first_in_line",
    "first_standby",
    "successor",
]


class Action(enum.StrEnum):
    WAIT = "wait"  # nothing to do until something changes
    JOIN = "join"  # create our election node (join the line)
    TAKE = "take"  # take the lease: new epoch + /leader, atomically
    CONFIRM = "confirm"  # we lead and the lease checks out: it is fresh again
    RESUME = "resume"  # /leader is still ours after a reconnect: lead again, new epoch
    STEP_DOWN = "step_down"  # we must not lead: stop, clean up our nodes, rejoin
    RELEASE = "release"  # hand over on request (switchover), stay out of line a while
    DROP_SWITCHOVER = "drop_switchover"  # a switchover request that cannot be honoured
    CLEAR_DEAD = "clear_dead"  # fast path: remove a crashed leader's nodes
    CLEAR_FORGED = "clear_forged"  # remove a persistent /leader no member could have made
    LEAVE = "leave"  # withdraw our election node: we should not lead now (see withheld)
    REQUEUE = "requeue"  # placement: our election node to the back of the line (see requeue)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """What one member knows at one instant (read from ZooKeeper, plus local state)."""

    me: str
    eligible: bool
    role: Role
    connected: bool
    my_node: str | None
    line: tuple[Candidate, ...]
    leader: LeaderInfo | None
    leader_is_mine: bool
    switchover: SwitchoverRequest | None = None
    dead_leader: LeaderInfo | None = None
    holdoff: bool = False
    release_requested: str | None = None
    # /leader exists but holds something unreadable (someone wrote over it).
    leader_garbled: bool = False
    # /leader is a persistent node: members only create it ephemeral, so it is forged.
    leader_persistent: bool = False
    # /pause exists (`pfxha pause`): automatic failover is off, the leader keeps leading.
    paused: bool = False
    # Why this member keeps out of the line for now (e.g. it cannot reach the
    # service while another member can); None: it competes as configured.
    withheld: str | None = None
    # Placement (election/_placement.py) asks this standby to move to the back of the
    # line, why; done only while someone else leads (never with the lease free).
    requeue: str | None = None


def successor(line: tuple[Candidate, ...], request: SwitchoverRequest | None) -> Candidate | None:
    """Who takes the lease when it is free: a switchover target in line, else the first."""
    if not line:
        return None
    if request is not None and request.to is not None:
        for candidate in line:
            if candidate.name == request.to:
                return candidate
    return line[0]


def first_standby(line: tuple[Candidate, ...], leader: LeaderInfo) -> Candidate | None:
    """The first member in line that is not the leader: it clears a crashed leader."""
    for candidate in line:
        if candidate.name != leader.name:
            return candidate
    return None


def first_in_line(line: tuple[Candidate, ...], leader: LeaderInfo | None) -> Candidate | None:
    """Who clears a forged /leader: the first standby, or the first of all if it names none."""
    return first_standby(line, leader) if leader is not None else (line[0] if line else None)


def decide(s: Snapshot) -> Decision:
    if not s.connected:
        return Decision(Action.WAIT, "not connected to ZooKeeper")
    if s.role is Role.LEADER:
        return _as_leader(s)
    if s.leader_is_mine:
        # Our session survived a suspension and /leader is still ours.
        if s.my_node is not None and s.eligible:
            return Decision(Action.RESUME, "reconnected with the lease still held")
        return Decision(Action.STEP_DOWN, "stale /leader of ours without an election node")
    if s.withheld is not None and s.my_node is not None:
        return Decision(Action.LEAVE, f"withdrawn from the line: {s.withheld}")
    if s.eligible and s.my_node is None and not s.holdoff and s.withheld is None:
        return Decision(Action.JOIN, "not in the election line")
    if (
        s.requeue is not None
        and s.my_node is not None
        and s.leader is not None
        and not s.paused
        and not s.leader_persistent
        and not _reported_dead(s)
    ):
        return Decision(Action.REQUEUE, s.requeue)
    if s.paused:
        # Maintenance: whatever happened to the leader, nobody but it acts until resumed.
        return Decision(Action.WAIT, _paused_reason(s))
    if s.leader_persistent:
        first = first_in_line(s.line, s.leader)
        if s.my_node is not None and first is not None and first.node == s.my_node:
            return Decision(
                Action.CLEAR_FORGED, "/leader is a persistent node no member made: forged"
            )
        return Decision(Action.WAIT, "a forged (persistent) /leader: the first in line clears it")
    if s.leader_garbled:
        # Its owner's session is alive (the node is ephemeral): a leader repairs its
        # own; anyone else's ends with its session. Taking now would only fail.
        return Decision(
            Action.WAIT, "/leader holds unreadable data: waiting for its owner to repair it"
        )
    if s.leader is not None:
        if _reported_dead(s) and s.my_node is not None:
            first = first_standby(s.line, s.leader)
            if first is not None and first.node == s.my_node:
                return Decision(
                    Action.CLEAR_DEAD,
                    f"liveness socket of leader {s.leader.name} (epoch {s.leader.epoch}) "
                    "closed: its process is gone",
                )
        return Decision(Action.WAIT, f"{s.leader.name} leads (epoch {s.leader.epoch})")
    if s.my_node is None:
        if s.withheld is not None:
            return Decision(Action.WAIT, f"out of the line: {s.withheld}")
        return Decision(
            Action.WAIT,
            "released the lease, waiting for a successor"
            if s.holdoff
            else "not eligible to lead (nofailover)",
        )
    nxt = successor(s.line, s.switchover)
    if nxt is not None and nxt.node == s.my_node:
        if s.switchover is not None and s.switchover.to == s.me:
            return Decision(Action.TAKE, "switchover target, lease free")
        return Decision(Action.TAKE, "first in line, lease free")
    return Decision(Action.WAIT, f"{nxt.name if nxt else '?'} is next in line")


def _reported_dead(s: Snapshot) -> bool:
    """Whether the crash report is about this very /leader node and the liveness socket
    it names (a leader that resumed with a new socket has a new incarnation)."""
    dead, leader = s.dead_leader, s.leader
    return (
        dead is not None
        and leader is not None
        and dead.czxid == leader.czxid
        and dead.incarnation == leader.incarnation
    )


def _paused_reason(s: Snapshot) -> str:
    if s.leader is None:
        return "paused: the lease is free and nobody takes it until `pfxha resume`"
    if _reported_dead(s):
        return (
            f"paused: liveness socket of leader {s.leader.name} (epoch {s.leader.epoch}) "
            "closed, its process is gone; not taking over until `pfxha resume`"
        )
    return f"paused: {s.leader.name} leads (epoch {s.leader.epoch}), automatic failover off"


def _as_leader(s: Snapshot) -> Decision:
    if not s.leader_is_mine:
        return Decision(Action.STEP_DOWN, "/leader disappeared or belongs to someone else")
    if s.my_node is None:
        return Decision(Action.STEP_DOWN, "own election node disappeared")
    if s.release_requested is not None:
        return Decision(Action.RELEASE, s.release_requested)
    if s.leader_garbled:
        return Decision(
            Action.RESUME, "our /leader was overwritten with unreadable data: rewriting it"
        )
    request = s.switchover
    if request is not None and not request.readable:
        return Decision(Action.DROP_SWITCHOVER, "unreadable switchover request")
    if request is not None:
        if request.to is None:
            return Decision(Action.RELEASE, "switchover requested")
        if request.to == s.me:
            return Decision(Action.DROP_SWITCHOVER, "switchover target already leads")
        if any(c.name == request.to for c in s.line):
            return Decision(Action.RELEASE, f"switchover to {request.to} requested")
        return Decision(
            Action.DROP_SWITCHOVER, f"switchover target {request.to} is not an eligible member"
        )
    return Decision(Action.CONFIRM, "lease held")
