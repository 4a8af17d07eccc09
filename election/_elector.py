"""The elector: one member's thin executor around :func:`election._decide.decide`.

    elector = Elector(ElectionConfig(hosts=zk, cluster="lab", name="c1"), observers=[obs])
    elector.start()                 # connects, registers, joins the line (raises on bad config)
    epoch = elector.fresh_epoch()   # int iff we lead with a fresh lease right now, else None
    elector.release("switchover")   # hand the lease over now, rejoin as a standby later
    elector.stop()                  # graceful: release, unregister, close the session

One background thread runs the loop: read a snapshot of the cluster's nodes,
``decide()``, execute that one decision, wait for a watch, a connection-state
change or the next heartbeat. Observers are called from that thread.

The ideas it executes live in their own modules: the decision in
:mod:`election._decide`, lease freshness in :mod:`election._lease`, the epoch
counter (read as untrusted input) in :mod:`election._epoch`, the fast crash path
in :mod:`election._crash_path`, the ZooKeeper session and what kazoo's threads
report on it in :mod:`election._session`; what a decision does to ZooKeeper in
:mod:`election._acts`, and what the member says about itself in
:mod:`election._member_node`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError, SessionExpiredError
from kazoo.protocol.states import KazooState

from election._acts import TRANSIENT_ZK_ERRORS, LeaseActions
from election._cluster_nodes import ClusterNodes
from election._config import ElectionConfig
from election._crash_path import CrashPath
from election._decide import Action, Snapshot, decide
from election._epoch import EpochCounter
from election._errors import ElectionError
from election._lease import Lease
from election._model import (
    ElectionObserver,
    LeaderInfo,
    MemberInfo,
    Role,
    utc_now_iso,
)
from election._paths import ClusterPaths
from election._pause_report import PauseReport
from election._placement import ZkSeat
from election._placement_watch import PlacementWatch, placement_watch_for
from election._session import Session
from election._view_cache import ViewCache
from election._zk import client_for, cluster_acl

__all__ = ["Elector"]

log = logging.getLogger("pfxha.election")

# A leader re-reads the whole election at least every this many heartbeats, even
# when no watch fired (see election/_view_cache.py).
_FULL_READ_EVERY_HEARTBEATS = 5


class Elector(LeaseActions):
    """Takes part in the election of ``config.cluster`` as member ``config.name``."""

    def __init__(
        self,
        config: ElectionConfig,
        observers: Iterable[ElectionObserver] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        client_factory: Callable[[ElectionConfig], KazooClient] = client_for,
    ) -> None:
        self.config = config.validate()
        self.paths = ClusterPaths(config.cluster)
        self._acl = cluster_acl(config.auth_digest)
        self._observers: list[ElectionObserver] = list(observers)
        self._clock = clock
        self._client_factory = client_factory
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: KazooClient | None = None
        self._nodes: ClusterNodes | None = None
        self._role = Role.STOPPED
        self._lease = Lease(config.lease_s, clock)
        self._views = ViewCache(
            full_every_s=_FULL_READ_EVERY_HEARTBEATS * self.config.heartbeat_s, clock=clock
        )
        self._epochs = EpochCounter()
        self._crash_path = CrashPath(
            self.config, on_dead=self._on_leader_socket_closed, on_change=self._wake.set
        )
        self._session = Session(
            self.config,
            self.paths,
            self._acl,
            lock=self._lock,
            wake=self._wake,
            lease=self._lease,
            views=self._views,
        )
        self._my_node: str | None = None
        self._registered = False
        self._holdoff_until = 0.0
        self._dead_leader: LeaderInfo | None = None
        self._release_reason: str | None = None
        self._lease_version = -1
        self._dead_attempts = 0
        self._last_snapshot: tuple[int, Snapshot, int] | None = None
        self._pause_report = PauseReport(config.name)
        self._released = threading.Event()
        # What we reach, as our member node says it (see publish_reach).
        self._reach: dict[str, str] = {}
        self._reach_seq = 0
        self._reach_written_at = -float("inf")
        self._withheld: str | None = None
        # Placement (election/_placement.py): our host's ZooKeeper seat, a requested
        # move to the back of the line, and since when we lead.
        self._zk_seat = ZkSeat.UNKNOWN
        self._requeue: str | None = None
        self._elected_at: float | None = None
        self.placement: PlacementWatch | None = None
        self._started_at = utc_now_iso()
        self.transitions = 0

    # -- public surface ------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def client(self) -> KazooClient | None:
        """The elector's own ZooKeeper client (read-only use, e.g. status)."""
        return self._client

    def add_observer(self, observer: ElectionObserver) -> None:
        self._observers.append(observer)

    def fresh_epoch(self) -> int | None:
        """The epoch iff this member leads with a fresh lease right now, else None."""
        client = self._client
        if self._role is not Role.LEADER or client is None:
            return None
        if client.state != KazooState.CONNECTED:
            return None
        return self._lease.fresh_epoch()

    def is_leader(self) -> bool:
        return self.fresh_epoch() is not None

    def start(self) -> None:
        """Connect, create the layout, register; the loop then joins the election.

        Raises :class:`ElectionError` if ZooKeeper cannot be reached within
        ``connection_timeout`` or refuses our writes (NotAuthorizedError).
        """
        if self._thread is not None:
            raise ElectionError("elector already started")
        client = self._session.connect(self._client_factory)
        self._client = client
        self._nodes = ClusterNodes(client, self.paths, self._acl, self.config.session_timeout)
        try:
            self._crash_path.settle()
            self._session.join(client, self._register)
        except Exception:
            client.stop()
            client.close()
            self._client = self._nodes = None
            raise
        self._set_role(Role.STANDBY, "joined the election")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"pfxha-elector-{self.name}")
        self._thread.daemon = True
        self._thread.start()
        self._start_placement()

    def _start_placement(self) -> None:
        self.placement = placement_watch_for(
            self,
            self.config,
            clock=self._clock,
            on_event=lambda event, detail: self._notify("on_placement", event, detail),
        )
        if self.placement is not None:
            self.placement.start()

    def members(self) -> tuple[MemberInfo, ...]:
        """Every member's node as ZooKeeper has it now (one listing, one pipelined read)."""
        nodes = self._nodes
        if nodes is None:
            return ()
        return nodes.members()

    def release(self, reason: str = "released", timeout: float = 5.0) -> bool:
        """Give up the lease now and rejoin as a standby; False if we were not leading."""
        with self._lock:
            if self._role is not Role.LEADER:
                return False
            self._lease.revoke()  # stop acting before anything else happens
            self._release_reason = reason
            self._released.clear()
        self._wake.set()
        if threading.current_thread() is self._thread:
            return True  # called from an observer: the loop releases right after it returns
        return self._released.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: hand the lease over at once, unregister, close the session."""
        if self.placement is not None:
            self.placement.stop()
            self.placement = None
        self._lease.revoke()
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        client, nodes = self._client, self._nodes
        if client is not None and nodes is not None and client.state == KazooState.CONNECTED:
            with contextlib.suppress(*TRANSIENT_ZK_ERRORS):
                if self._role is Role.LEADER:
                    self._demote(Role.STANDBY, "stopping")
                    # Hand over in one round trip; closing the session removes the rest.
                    if nodes.release(self._lease_version, self._my_node, None):
                        self._my_node = None
                nodes.delete_own(self.name, self._my_node, leader=True, member=True)
                self._my_node = None
        if self._role is Role.LEADER:
            self._demote(Role.STOPPED, "stopping")
        self._crash_path.close()
        self._crash_path.stop_serving()
        if client is not None:
            self._session.close(client)
        self._client = self._nodes = None
        if self._role is not Role.STOPPED:
            self._set_role(Role.STOPPED, "stopped")

    # -- the crash probe's callback (its thread: set a flag, never block) ----------------
    # (kazoo's callbacks, on the connection state and the watches, are the Session's.)

    def _on_leader_socket_closed(self, leader: LeaderInfo) -> None:
        with self._lock:
            self._dead_leader = leader
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            again = False
            try:
                again = self._step()
            except (ConnectionClosedError, SessionExpiredError) as exc:
                log.debug("step interrupted: %r", exc)
            except TRANSIENT_ZK_ERRORS as exc:
                log.info("[5098] election step failed: %r", exc, extra={"event_id": 5098})
            except Exception:
                log.exception("[5099] election step crashed", extra={"event_id": 5099})
            if again:
                continue
            interval = (
                self.config.heartbeat_s
                if self._role is Role.LEADER
                else self.config.standby_poll_interval
            )
            self._wake.wait(interval)
            self._wake.clear()

    def _step(self) -> bool:
        """One snapshot, one decision; True when another step should follow at once."""
        client, nodes = self._client, self._nodes
        assert client is not None
        assert nodes is not None
        interrupted = self._session.take_interrupted()
        if interrupted and self._role in (Role.LEADER, Role.STANDBY):
            self._demote(Role.SUSPENDED, interrupted)
        if client.state != KazooState.CONNECTED:
            self._session.revive(client)
            return False
        session_id = client.client_id[0]
        if self._session.renewed(session_id):
            # A new session: everything ephemeral we had is gone.
            self._my_node = None
            self._registered = False
        if not self._registered:
            self._register()
        if self._try_fast_takeover(nodes, session_id):
            return True

        started = self._clock()
        own_path = (
            self.paths.candidate(self._my_node)
            if self._role is Role.LEADER and self._my_node is not None
            else None
        )
        view = self._session.read(nodes, own_path, session_id)
        leader = view.leader
        if self._my_node not in view.children:
            self._my_node = nodes.own_node(view.line, self.name, session_id)
        if leader is not None:
            self._epochs.saw(leader.epoch)
        leader_is_mine = (
            leader is not None and leader.session_id == session_id and leader.name == self.name
        ) or (view.leader_garbled and view.leader_owner == session_id)
        holdoff = self._clock() < self._holdoff_until and (
            leader is None or leader.name == self.name
        )
        with self._lock:
            dead = self._dead_leader
            release = self._release_reason
            withheld = self._withheld
            requeue = self._requeue
        snapshot = Snapshot(
            me=self.name,
            eligible=not self.config.nofailover,
            role=self._role,
            connected=True,
            my_node=self._my_node,
            line=view.line,
            leader=leader,
            leader_is_mine=leader_is_mine,
            switchover=view.switchover,
            dead_leader=dead,
            holdoff=holdoff,
            release_requested=release,
            leader_garbled=view.leader_garbled,
            leader_persistent=view.leader_persistent,
            paused=view.paused,
            withheld=withheld,
            requeue=requeue,
        )
        self._last_snapshot = (session_id, snapshot, view.leader_version)
        decision = decide(snapshot)
        if requeue is not None and decision.action is not Action.REQUEUE:
            with self._lock:
                self._requeue = None  # no longer due (the watch asks again if it is)
        self._pause_report.update(view.paused, decision, leading=self._role is Role.LEADER)
        if self._role is Role.SUSPENDED and decision.action is not Action.RESUME:
            self._set_role(Role.STANDBY, "reconnected to ZooKeeper")
        self._crash_path.watch(leader if not leader_is_mine else None)
        leading = self._role is Role.LEADER or leader_is_mine
        self._publish_fast_path(self._crash_path.seen(leader, leading=leading))
        if decision.action not in (Action.CONFIRM, Action.WAIT):
            self._views.forget()  # we are about to write the election's nodes ourselves
        return self._execute(nodes, decision, snapshot, view.leader_version, started)

    def _try_fast_takeover(self, nodes: ClusterNodes, session_id: int) -> bool:
        """On a crash report, act on the last snapshot at once instead of reading a new one.

        Saves a round trip; safe because the clearing transaction checks every version
        it relies on and simply fails if anything moved.
        """
        with self._lock:
            dead = self._dead_leader
            deleted = self._session.take_leader_deleted()  # the same (reentrant) lock
        last = self._last_snapshot
        if last is None or last[0] != session_id or self._role is not Role.STANDBY:
            return False
        _, snapshot, leader_version = last
        old = snapshot.leader
        if dead is not None:
            snapshot = replace(snapshot, dead_leader=dead)
            decision = decide(snapshot)
            if decision.action is Action.CLEAR_DEAD:
                self._last_snapshot = None
                self._clear_dead(nodes, snapshot, decision.reason, leader_version)
                return True
        if deleted and old is not None and old.name != self.name:
            # The leader released (or lost) the lease: if we are next, take it now; the
            # transaction fails harmlessly if the line or the epoch moved meanwhile.
            line = tuple(c for c in snapshot.line if c.node != old.node)
            snapshot = replace(
                snapshot, leader=None, line=line, dead_leader=None, role=Role.STANDBY
            )
            decision = decide(snapshot)
            if decision.action is Action.TAKE:
                self._last_snapshot = None
                self._take(nodes, snapshot, self._clock(), decision.reason)
                return True
        return False
