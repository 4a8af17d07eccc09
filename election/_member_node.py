"""What a member says about itself in its member node, and what it saw of the line.

    class Elector(LeaseActions):        # LeaseActions builds on MemberNode
        ...
    elector.publish_reach({"service": "ok"}, refresh_s=5.0)   # on change, or each refresh
    elector.publish_seat(ZkSeat.LEADER)                       # on change only
    elector.withhold("cannot reach the service")              # out of the line while it holds
    elector.line_facts()                                      # our last look, no ZooKeeper call

A mixin of :class:`election._elector.Elector`: the state it reads and writes is the
elector's own (set up in ``Elector.__init__``), declared here for the type checker.
Writes go through :meth:`MemberNode._write_member`, once per change.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from election._cluster_nodes import ClusterNodes
from election._config import ElectionConfig
from election._crash_path import CrashPath
from election._decide import Snapshot
from election._model import ElectionObserver, FastPath, MemberInfo, Role
from election._placement import ZkSeat
from election._placement_watch import LineFacts

__all__ = ["MemberNode"]

log = logging.getLogger("pfxha.election")


class MemberNode:
    """Our member node and our last look at the line (see the module docstring)."""

    config: ElectionConfig
    _lock: threading.RLock
    _wake: threading.Event
    _clock: Callable[[], float]
    _client: KazooClient | None
    _nodes: ClusterNodes | None
    _crash_path: CrashPath
    _observers: list[ElectionObserver]
    _role: Role
    _registered: bool
    _started_at: str
    _last_snapshot: tuple[int, Snapshot, int] | None
    _elected_at: float | None
    _reach: dict[str, str]
    _reach_seq: int
    _reach_written_at: float
    _withheld: str | None
    _zk_seat: ZkSeat
    _requeue: str | None

    @property
    def name(self) -> str:
        return self.config.name

    def publish_reach(self, report: Mapping[str, str], refresh_s: float) -> bool:
        """Say in our member node what we reach: on change, and at least every ``refresh_s``.

        Every write bumps ``reach_seq``, from which readers judge freshness on their
        own clock. Returns True when a write was sent (one per refresh per member).
        """
        now = self._clock()
        with self._lock:
            changed = dict(report) != self._reach
            if not changed and now - self._reach_written_at < refresh_s:
                return False
            self._reach = dict(report)
            self._reach_seq += 1
            self._reach_written_at = now
        self._write_member()
        return True

    def withhold(self, reason: str | None) -> None:
        """Keep out of the election line while ``reason`` holds (None: compete again).

        A standby that cannot reach what a leader needs, while another member can,
        should not be the one to take the lease. A leader is not affected (it hands
        over by :meth:`hand_over`).
        """
        with self._lock:
            if reason == self._withheld:
                return
            self._withheld = reason
        self._wake.set()

    def publish_seat(self, seat: ZkSeat) -> None:
        """Say in our member node what our host's ZooKeeper server is (on change only)."""
        with self._lock:
            if seat is self._zk_seat:
                return
            self._zk_seat = seat
        self._write_member()

    def requeue(self, reason: str) -> None:
        """Move to the back of the election line on the next step (a standby, while
        someone else leads; otherwise nothing happens)."""
        with self._lock:
            self._requeue = reason
        self._wake.set()

    def line_facts(self) -> LineFacts | None:
        """Our last look at the line (no ZooKeeper call); None before the first."""
        last = self._last_snapshot
        if last is None:
            return None
        snapshot = last[1]
        leading = self._role is Role.LEADER
        since = self._elected_at
        return LineFacts(
            leading=leading,
            in_office_s=self._clock() - since if leading and since is not None else 0.0,
            line=snapshot.line,
            leader=snapshot.leader.name if snapshot.leader is not None else None,
            paused=snapshot.paused,
        )

    def line(self) -> tuple[str, ...]:
        """Members in the election line at our last look (no ZooKeeper call)."""
        last = self._last_snapshot
        return tuple(c.name for c in last[1].line) if last is not None else ()

    def _notify(self, method: str, *args: Any) -> None:
        for observer in list(self._observers):
            try:
                getattr(observer, method)(*args)
            except Exception:
                log.exception(
                    "[5090] observer %r failed in %s", observer, method, extra={"event_id": 5090}
                )

    def _member_info(self) -> MemberInfo:
        fast_path, fast_path_reason = self._crash_path.published
        return MemberInfo(
            name=self.name,
            host=self.config.member_host,
            pid=os.getpid(),
            priority=self.config.priority,
            nofailover=self.config.nofailover,
            version=self.config.member_version,
            started_at=self._started_at,
            role=self._role.value,
            fast_path=fast_path.value,
            fast_path_reason=fast_path_reason,
            config_digest=self.config.config_digest,
            reach=dict(self._reach),
            reach_seq=self._reach_seq,
            zk_seat=self._zk_seat.value,
        )

    def _register(self) -> None:
        assert self._nodes is not None
        self._nodes.register(self.name, self._member_info().to_json())
        self._registered = True

    def _write_member(self) -> None:
        """Rewrite our member node (role, fast path) if we are registered and connected."""
        client, nodes = self._client, self._nodes
        if not self._registered or client is None or nodes is None:
            return
        if client.state == KazooState.CONNECTED:
            nodes.update_member(self.name, self._member_info().to_json())

    def _publish_fast_path(self, seen: tuple[FastPath, str] | None, *, write: bool = True) -> None:
        if not self._crash_path.adopt(seen):
            return
        state, reason = self._crash_path.published
        log.info(
            "[5027] %s fast path %s%s",
            self.name,
            state.value,
            f": {reason}" if reason else "",
            extra={"event_id": 5027, "fast_path": state.value},
        )
        self._notify("on_fast_path_change", state, reason)
        if write:
            self._write_member()
