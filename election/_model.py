"""The election's vocabulary: roles, what ZooKeeper says about members and the leader.

The JSON in ``/pfxha/<cluster>/members/<name>`` and ``/pfxha/<cluster>/leader`` is a
public contract (see docs/election.md); these classes parse and produce it.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Candidate",
    "ClusterStatus",
    "ElectionObserver",
    "FastPath",
    "HistoryEntry",
    "LeaderInfo",
    "MemberInfo",
    "PauseInfo",
    "Role",
    "SwitchoverRequest",
    "utc_now_iso",
]


class Role(enum.StrEnum):
    STANDBY = "standby"
    LEADER = "leader"
    SUSPENDED = "suspended"  # connection lost, session maybe alive: do nothing
    STOPPED = "stopped"


class FastPath(enum.StrEnum):
    """Whether this member would learn of the leader's crash at once (see docs/election.md).

    Published in the member node (``fast_path``) only when it changes.
    """

    IDLE = "idle"  # nothing to watch: we lead, or the fast path is off here
    ARMED = "armed"  # a connection verified by the leader's greeting is held open
    UNAVAILABLE = "unavailable"  # no verified connection: takeover waits for the session


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which no writer of ours produces
    # and int() cannot take: a node holding them is as unreadable as garbage.
    raise ValueError(f"{name} is not JSON")


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class LeaderInfo:
    """Content of ``/leader``: who holds the lease, its epoch, since when (ISO 8601 UTC).

    ``liveness`` is the "host:port" of the leader's liveness socket (fast path), or
    None; ``incarnation`` the random token that socket greets every connection with,
    so a standby can tell the leader's own socket from anything else listening there
    (None in nodes written before the greeting existed: such a leader cannot be
    verified, so its crash is detected by the session timeout); ``node`` its election
    node (so a standby can remove exactly that one); ``czxid`` and ``session_id``
    identify this very znode (not part of the JSON).
    """

    name: str
    epoch: int
    since: str
    liveness: str | None = None
    node: str | None = None
    czxid: int = 0
    session_id: int = 0
    incarnation: str | None = None

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"name": self.name, "epoch": self.epoch, "since": self.since}
        if self.liveness is not None:
            data["liveness"] = self.liveness
        if self.incarnation is not None:
            data["incarnation"] = self.incarnation
        if self.node is not None:
            data["node"] = self.node
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, raw: bytes, czxid: int = 0, session_id: int = 0) -> LeaderInfo | None:
        data = _loads(raw)
        try:
            return cls(
                name=str(data["name"]),
                epoch=int(data["epoch"]),
                since=str(data.get("since", "")),
                liveness=_optional_str(data.get("liveness")),
                node=_optional_str(data.get("node")),
                czxid=czxid,
                session_id=session_id,
                incarnation=_optional_str(data.get("incarnation")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


@dataclass(frozen=True)
class MemberInfo:
    """Content of ``/members/<name>`` (``role`` is the member's own last word on it).

    ``fast_path`` is a :class:`FastPath` value ("" from members that predate it) and
    ``fast_path_reason`` why, e.g. why this standby holds no verified connection to the
    leader's liveness socket; both are rewritten only when the state changes.
    """

    name: str
    host: str = ""
    pid: int = 0
    priority: int = 0
    nofailover: bool = False
    version: str = ""
    started_at: str = ""
    role: str = ""
    fast_path: str = ""
    fast_path_reason: str = ""
    # Digest of the member's effective configuration ("" from members that predate it).
    config_digest: str = ""
    # What the member reaches ({"service": "ok", "ca:primary": "failed"}), and a
    # number it bumps at least every refresh interval: readers judge freshness by
    # when they saw it change, on their own clock. Empty/0 from older members.
    reach: dict[str, str] = field(default_factory=dict)
    reach_seq: int = 0
    # What the ZooKeeper server on the member's host is ("leader", "follower"; "":
    # placement off or not known), rewritten when it changes (election/_placement.py).
    zk_seat: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, name: str, raw: bytes) -> MemberInfo:
        data = _loads(raw)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["name"] = name
        reach = known.get("reach")
        known["reach"] = (
            {str(k): str(v) for k, v in reach.items() if isinstance(v, str)}
            if isinstance(reach, dict)
            else {}
        )
        if not isinstance(known.get("reach_seq", 0), int):
            known["reach_seq"] = 0
        if not isinstance(known.get("zk_seat", ""), str):
            known["zk_seat"] = ""
        try:
            return cls(**known)
        except TypeError:
            return cls(name=name)


_CANDIDATE = re.compile(r"^m-(?P<name>.+)-p(?P<priority>-?\d+)-(?P<seq>\d{10})$")


@dataclass(frozen=True, order=True)
class Candidate:
    """One node in the election line ``/election/m-<name>-p<priority>-<seq>``.

    Sorting orders the line: higher priority first, then who joined first.
    """

    sort_key: tuple[int, int] = field(init=False, repr=False)
    node: str = field(compare=False)
    name: str = field(compare=False)
    priority: int = field(compare=False)
    seq: int = field(compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sort_key", (-self.priority, self.seq))

    @staticmethod
    def prefix(name: str, priority: int) -> str:
        return f"m-{name}-p{priority}-"

    @classmethod
    def parse(cls, node: str) -> Candidate | None:
        match = _CANDIDATE.match(node)
        if match is None:
            return None
        return cls(
            node=node,
            name=match["name"],
            priority=int(match["priority"]),
            seq=int(match["seq"]),
        )


@dataclass(frozen=True)
class SwitchoverRequest:
    """Content of the persistent ``/switchover`` node written by ``pfxha switchover``."""

    to: str | None
    requested_at: str
    version: int = 0
    # False when the node holds something no `pfxha switchover` wrote: the leader
    # drops it instead of taking it as "switch over to anyone".
    readable: bool = True

    def to_json(self) -> bytes:
        return json.dumps({"to": self.to, "requested_at": self.requested_at}).encode()

    @classmethod
    def parse(cls, raw: bytes, version: int = 0) -> SwitchoverRequest:
        data = _loads(raw)
        to = data.get("to")
        requested_at = data.get("requested_at")
        readable = isinstance(requested_at, str) and (to is None or isinstance(to, str))
        return cls(
            to=to if isinstance(to, str) and to else None,
            requested_at=requested_at if isinstance(requested_at, str) else "",
            version=version,
            readable=readable,
        )


@dataclass(frozen=True)
class PauseInfo:
    """Content of the persistent ``/pause`` node written by ``pfxha pause``.

    The node's existence is the pause (automatic failover off); its content only
    says since when and why, so content no ``pfxha pause`` wrote still pauses.
    """

    paused_at: str
    reason: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"paused_at": self.paused_at, "reason": self.reason}).encode()

    @classmethod
    def parse(cls, raw: bytes) -> PauseInfo:
        data = _loads(raw)
        paused_at, reason = data.get("paused_at"), data.get("reason")
        return cls(
            paused_at=paused_at if isinstance(paused_at, str) else "",
            reason=reason if isinstance(reason, str) else "",
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One leadership, as ``/history/h-<seq>`` holds it: written by the new leader in the
    transaction that takes the epoch, so entries are in epoch order.

    ``since`` is when it began (ISO 8601 UTC), ``reason`` why this member took the
    lease; ``to`` (not stored) is when the next leadership began, filled in by
    :func:`election.read_history` (None for the last one: it may still last).
    """

    epoch: int
    name: str
    since: str
    reason: str
    to: str | None = None

    def to_json(self) -> bytes:
        data = {"epoch": self.epoch, "name": self.name, "since": self.since, "reason": self.reason}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, raw: bytes) -> HistoryEntry | None:
        data = _loads(raw)
        epoch, name = data.get("epoch"), data.get("name")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not isinstance(name, str):
            return None
        since, reason = data.get("since"), data.get("reason")
        return cls(
            epoch=epoch,
            name=name,
            since=since if isinstance(since, str) else "",
            reason=reason if isinstance(reason, str) else "",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClusterStatus:
    """What ZooKeeper alone says about a cluster (``pfxha status``)."""

    cluster: str
    members: tuple[MemberInfo, ...]
    leader: LeaderInfo | None
    epoch: int
    line: tuple[Candidate, ...] = ()
    switchover: SwitchoverRequest | None = None
    paused: PauseInfo | None = None

    @property
    def since(self) -> str | None:
        return self.leader.since if self.leader else None

    def role_of(self, name: str) -> str:
        if self.leader is not None and self.leader.name == name:
            return Role.LEADER.value
        for member in self.members:
            if member.name == name and member.role:
                return member.role
        return Role.STANDBY.value if any(c.name == name for c in self.line) else "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "leader": self.leader.name if self.leader else None,
            "epoch": self.epoch,
            "leader_epoch": self.leader.epoch if self.leader else None,
            "since": self.since,
            "members": [{**asdict(m), "role": self.role_of(m.name)} for m in self.members],
            "election_line": [c.name for c in self.line],
            "switchover": (
                {"to": self.switchover.to, "requested_at": self.switchover.requested_at}
                if self.switchover
                else None
            ),
            "paused": asdict(self.paused) if self.paused else None,
        }


class ElectionObserver:
    """Subclass and override what you need; every method defaults to doing nothing.

    Called from the elector's background thread, one call at a time, in order.
    Keep them short: the elector does not re-check its lease while you run.
    """

    def on_elected(self, epoch: int) -> None:
        """This member holds the lease with fencing token ``epoch`` (new every time)."""

    def on_demoted(self, reason: str) -> None:
        """This member no longer holds a fresh lease; stop every side effect now."""

    def on_role_change(self, old: Role, new: Role, reason: str) -> None:
        """Every role transition, with the reason (for logs and metrics)."""

    def on_coordination_problem(self, kind: str, detail: str) -> None:
        """Someone wrote what no member would into the cluster's nodes, and this member
        repaired or dropped it: ``kind`` is ``epoch``, ``leader`` or ``switchover``."""

    def on_fast_path_change(self, state: FastPath, reason: str) -> None:
        """This member's fast-path state changed (once per change, not per retry)."""

    def on_placement(self, event: str, detail: str) -> None:
        """Placement (docs/election.md): ``seat`` (detail: leader, follower, unknown),
        ``hand_over`` or ``requeue`` (detail: the member that succeeds) or ``refused``
        (the placement budget is spent). Called from the placement watch's thread."""
