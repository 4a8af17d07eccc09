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
in :mod:`election._crash_path`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    KazooException,
    NoAuthError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import EventType, KazooState, WatchedEvent

from election._cluster_nodes import ClusterNodes
from election._config import ElectionConfig
from election._crash_path import CrashPath
from election._decide import Action, Decision, Snapshot, decide, successor
from election._epoch import EpochCounter
from election._errors import ElectionError, NotAuthorizedError
from election._lease import Lease
from election._model import (
    Candidate,
    ElectionObserver,
    FastPath,
    HistoryEntry,
    LeaderInfo,
    MemberInfo,
    Role,
    utc_now_iso,
)
from election._paths import ClusterPaths
from election._placement import ZkSeat
from election._placement_watch import LineFacts, PlacementWatch
from election._status import request_switchover
from election._yield_budget import HandOver, YieldBudget
from election._yield_budget import claim as claim_yield
from election._yield_budget import withdraw as withdraw_yield
from election._zk import client_for, cluster_acl, ensure_layout
from election._zk_seat import colocated_server

__all__ = ["Elector"]

log = logging.getLogger("pfxha.election")

_TRANSIENT = (KazooException, KazooTimeoutError, OperationTimeoutError)


class Elector:
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
        self._epochs = EpochCounter()
        self._crash_path = CrashPath(
            self.config, on_dead=self._on_leader_socket_closed, on_change=self._wake.set
        )
        self._interrupted: str | None = None
        self._session_id: int | None = None
        self._my_node: str | None = None
        self._registered = False
        self._holdoff_until = 0.0
        self._dead_leader: LeaderInfo | None = None
        self._release_reason: str | None = None
        self._lease_version = -1
        self._dead_attempts = 0
        self._last_snapshot: tuple[int, Snapshot, int] | None = None
        self._pause_reported: str | None = None
        self._leader_deleted = False
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
    def name(self) -> str:
        return self.config.name

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
        if self.config.auth_digest is None:
            log.warning(
                "[5040] no ZooKeeper credentials for cluster %s: nodes are open to any "
                "client (configure auth_digest to restrict writes to connectors)",
                self.config.cluster,
                extra={"event_id": 5040},
            )
        client = self._client_factory(self.config)
        client.add_listener(self._on_connection_state)
        try:
            client.start(timeout=self.config.connection_timeout)
        except KazooTimeoutError as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise ElectionError(
                f"could not connect to ZooKeeper at {self.config.hosts} within "
                f"connection_timeout={self.config.connection_timeout}s"
            ) from exc
        self._client = client
        self._nodes = ClusterNodes(client, self.paths, self._acl, self.config.session_timeout)
        try:
            self._crash_path.settle()
            ensure_layout(client, self.paths, self._acl)
            self._session_id = client.client_id[0]
            try:
                self._register()
            except NoAuthError as exc:
                raise NotAuthorizedError(
                    f"ZooKeeper refused to register {self.name} under {self.paths.members}: "
                    "NoAuth (credentials missing or not a connector identity)"
                ) from exc
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
        cfg = self.config
        server, why = colocated_server(cfg.colocated_server, cfg.hosts)
        if server is None:
            if cfg.colocated_server:
                log.warning("[5065] %s: %s", self.name, why, extra={"event_id": 5065})
            return
        log.info(
            "[5065] %s: placement on, this host's ZooKeeper server is %s (%s)",
            self.name,
            server,
            why,
            extra={"event_id": 5065},
        )
        self.placement = PlacementWatch(
            self,
            server,
            interval_s=cfg.placement_probe_interval,
            min_s=cfg.placement_min_in_office,
            budget=YieldBudget(cfg.placement_budget, cfg.placement_budget_window),
            clock=self._clock,
            on_event=lambda event, detail: self._notify("on_placement", event, detail),
        )
        self.placement.start()

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

    def members(self) -> tuple[MemberInfo, ...]:
        """Every member's node as ZooKeeper has it now (one listing, one pipelined read)."""
        nodes = self._nodes
        if nodes is None:
            return ()
        return nodes.members()

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

    def hand_over(self, to: str, reason: str, budget: YieldBudget, *, kind: str = "y") -> HandOver:
        """Hand the lease to ``to`` through the switchover path, within the cluster's budget.

        Refused when we do not lead, when ``to`` is not in the election line, or
        when the yield budget of the window is spent (members then stop yielding).
        The budget is charged only for a hand-over that was requested.
        """
        client = self._client
        if self._role is not Role.LEADER or client is None:
            return HandOver(False, "not the leader")
        # The line of our last look saves a read on the failover path; the switchover
        # request checks it again against ZooKeeper (and a refusal returns the claim).
        if to not in self.line():
            return HandOver(False, f"{to} is not in the election line")
        try:
            claimed, used = claim_yield(
                client, self.paths, budget, self._acl, who=self.name, why=reason, kind=kind
            )
            if claimed is None:
                return HandOver(
                    False,
                    f"yield budget spent: {used} voluntary hand-overs in the last "
                    f"{budget.window_s:.0f}s (limit {budget.limit})",
                    budget_spent=True,
                )
            try:
                request_switchover(
                    client, self.config.cluster, to, auth_digest=self.config.auth_digest
                )
            except ElectionError as exc:
                withdraw_yield(client, claimed)
                return HandOver(False, f"switchover to {to} not requested: {exc}")
        except _TRANSIENT as exc:
            return HandOver(False, f"ZooKeeper did not answer: {exc!r}")
        log.warning(
            "[5032] %s hands the lease to %s: %s",
            self.name,
            to,
            reason,
            extra={"event_id": 5032, "to": to, "reason": reason},
        )
        return HandOver(True, f"switchover to {to} requested")

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
            with contextlib.suppress(*_TRANSIENT):
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
            with contextlib.suppress(Exception):
                client.stop()
                client.close()
        self._client = self._nodes = None
        if self._role is not Role.STOPPED:
            self._set_role(Role.STOPPED, "stopped")

    # -- kazoo callbacks (kazoo's threads: set flags, never block) ----------------------

    def _on_connection_state(self, state: KazooState) -> None:
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            self._lease.revoke()
            with self._lock:
                self._interrupted = (
                    "ZooKeeper session lost"
                    if state == KazooState.LOST
                    else "ZooKeeper connection suspended"
                )
        self._wake.set()

    def _lease_watch(self) -> Callable[[WatchedEvent], None]:
        """The watch for /leader and our election node (see :meth:`Lease.watcher`)."""
        return self._lease.watcher(self._on_lease_node_event)

    def _on_lease_node_event(self, event: WatchedEvent) -> None:
        if event.type == EventType.DELETED and event.path == self.paths.leader:
            with self._lock:
                self._leader_deleted = True
        self._wake.set()

    def _on_watch(self, _event: object) -> None:
        self._wake.set()

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
            except _TRANSIENT as exc:
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
        with self._lock:
            interrupted, self._interrupted = self._interrupted, None
        if interrupted and self._role in (Role.LEADER, Role.STANDBY):
            self._demote(Role.SUSPENDED, interrupted)
        if client.state != KazooState.CONNECTED:
            return False
        session_id = client.client_id[0]
        if session_id != self._session_id:
            # A new session: everything ephemeral we had is gone.
            self._session_id = session_id
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
        view = nodes.read(own_path, self._lease_watch(), self._on_watch)
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
        self._report_pause(view.paused, decision)
        if self._role is Role.SUSPENDED and decision.action is not Action.RESUME:
            self._set_role(Role.STANDBY, "reconnected to ZooKeeper")
        self._crash_path.watch(leader if not leader_is_mine else None)
        leading = self._role is Role.LEADER or leader_is_mine
        self._publish_fast_path(self._crash_path.seen(leader, leading=leading))
        return self._execute(nodes, decision, snapshot, view.leader_version, started)

    def _report_pause(self, paused: bool, decision: Decision) -> None:
        """Log entering and leaving maintenance, and a crash it keeps us from healing, once."""
        said = decision.reason if paused and decision.action is Action.WAIT else None
        if paused and self._role is Role.LEADER:
            said = "paused: leading on, automatic failover off"
        if said == self._pause_reported:
            return
        if said is not None:
            log.warning("[5050] %s: %s", self.name, said, extra={"event_id": 5050})
        elif self._pause_reported is not None:
            log.warning(
                "[5051] %s: cluster resumed, automatic failover on",
                self.name,
                extra={"event_id": 5051},
            )
        self._pause_reported = said

    def _try_fast_takeover(self, nodes: ClusterNodes, session_id: int) -> bool:
        """On a crash report, act on the last snapshot at once instead of reading a new one.

        Saves a round trip; safe because the clearing transaction checks every version
        it relies on and simply fails if anything moved.
        """
        with self._lock:
            dead = self._dead_leader
            deleted, self._leader_deleted = self._leader_deleted, False
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

    def _execute(
        self,
        nodes: ClusterNodes,
        decision: Decision,
        s: Snapshot,
        leader_version: int,
        started: float,
    ) -> bool:
        """Carry out ``decision``; True when the loop should look again at once."""
        action = decision.action
        if action is Action.WAIT:
            return False
        if action is Action.CONFIRM:
            assert s.leader is not None
            if s.leader.epoch != self._lease.epoch:
                self._step_down(nodes, s, f"/leader shows epoch {s.leader.epoch}")
                return True
            self._lease.confirm(started)
            return False
        if action is Action.JOIN:
            self._my_node = nodes.join(Candidate.prefix(self.name, self.config.priority))
            log.info(
                "[5010] %s joined the election line as %s",
                self.name,
                self._my_node,
                extra={"event_id": 5010},
            )
        elif action is Action.TAKE:
            self._take(nodes, s, started, decision.reason)
        elif action is Action.RESUME:
            self._resume(nodes, leader_version, started, decision.reason)
        elif action is Action.STEP_DOWN:
            self._step_down(nodes, s, decision.reason, leader_version)
        elif action is Action.RELEASE:
            self._release(nodes, s, decision.reason, leader_version)
        elif action is Action.DROP_SWITCHOVER:
            assert s.switchover is not None
            log.info(
                "[5031] switchover request dropped: %s", decision.reason, extra={"event_id": 5031}
            )
            nodes.drop_switchover(s.switchover)
            if not s.switchover.readable:
                self._notify("on_coordination_problem", "switchover", decision.reason)
        elif action is Action.CLEAR_DEAD:
            self._clear_dead(nodes, s, decision.reason, leader_version)
        elif action is Action.LEAVE:
            assert s.my_node is not None
            if nodes.leave(s.my_node):
                self._my_node = None
                log.info(
                    "[5012] %s left the election line: %s",
                    self.name,
                    decision.reason,
                    extra={"event_id": 5012},
                )
        elif action is Action.REQUEUE:
            self._do_requeue(nodes, s, decision.reason, leader_version)
        elif action is Action.CLEAR_FORGED:
            if nodes.delete_forged_leader(leader_version):
                log.error(
                    "[5117] %s removed a forged /leader (%s): %s",
                    self.name,
                    s.leader.name if s.leader is not None else "unreadable",
                    decision.reason,
                    extra={"event_id": 5117},
                )
                self._notify("on_coordination_problem", "leader", decision.reason)
        else:  # pragma: no cover
            raise AssertionError(f"unhandled action {action}")
        return True

    # -- actions -------------------------------------------------------------------------

    def _take(
        self,
        nodes: ClusterNodes,
        s: Snapshot,
        started: float,
        reason: str,
        clear: tuple[LeaderInfo, int] | None = None,
    ) -> bool:
        """New epoch + /leader in one transaction (first removing a crashed leader's nodes)."""
        assert s.my_node is not None
        value, version = self._next_epoch_base(nodes)
        epoch = value + 1
        info = self._leader_info(epoch, s.my_node)
        entry = HistoryEntry(epoch, self.name, info.since, reason)
        path = nodes.take(
            s.my_node, epoch, version, info, entry, switchover=s.switchover, clear=clear
        )
        if path is None:
            log.debug("take lease lost a race, a stale epoch guess or a pause; re-evaluating")
            self._epochs.missed()
            return False
        nodes.trim_history(path)
        self._epochs.committed(epoch, version + 1)
        self._lease_version = 0
        self._become_leader(epoch, started, reason)
        return True

    def _resume(
        self, nodes: ClusterNodes, leader_version: int, started: float, reason: str
    ) -> None:
        assert self._my_node is not None
        value, version = self._next_epoch_base(nodes)
        epoch = value + 1
        info = self._leader_info(epoch, self._my_node)
        entry = HistoryEntry(epoch, self.name, info.since, reason)
        path = nodes.resume(self._my_node, epoch, version, info, leader_version, entry)
        if path is None:
            log.debug("resume lost a race or a stale epoch guess; re-evaluating")
            self._epochs.missed()
            return
        nodes.trim_history(path)
        self._epochs.committed(epoch, version + 1)
        self._lease_version = leader_version + 1
        self._become_leader(epoch, started, reason)

    def _leader_info(self, epoch: int, node: str) -> LeaderInfo:
        """What /leader says of us under ``epoch``: our liveness socket and its incarnation."""
        liveness, incarnation = self._crash_path.serve()
        return LeaderInfo(
            self.name,
            epoch,
            utc_now_iso(),
            liveness=liveness,
            node=node,
            incarnation=incarnation,
        )

    def _next_epoch_base(self, nodes: ClusterNodes) -> tuple[int, int]:
        """(value, version) of /epoch to count on from; a bad value is reported, then repaired."""
        base = self._epochs.for_cas(nodes.read_epoch)
        if self._epochs.problem is not None:
            log.error(
                "[5116] %s does not believe the epoch counter: %s; counting on from %d",
                self.name,
                self._epochs.problem,
                base[0],
                extra={"event_id": 5116, "problem": self._epochs.problem},
            )
            self._notify("on_coordination_problem", "epoch", self._epochs.problem)
        return base

    def _step_down(
        self, nodes: ClusterNodes, s: Snapshot, reason: str, leader_version: int = -1
    ) -> None:
        if self._role is Role.LEADER:
            self._demote(Role.STANDBY, reason)
        if s.leader_is_mine:
            nodes.delete_leader(leader_version)
        self._crash_path.stop_serving()

    def _release(self, nodes: ClusterNodes, s: Snapshot, reason: str, leader_version: int) -> None:
        release_reason = self._release_reason
        self._demote(Role.STANDBY, release_reason or reason)
        honoured = s.switchover if s.switchover is not None and s.switchover.to is None else None
        done = nodes.release(leader_version, self._my_node, honoured)
        self._crash_path.stop_serving()
        if done:
            self._my_node = None
            # Stay out of line so the successor, not us, takes the lease.
            self._holdoff_until = self._clock() + self.config.holdoff_s
            log.info(
                "[5030] %s released the lease: %s",
                self.name,
                release_reason or reason,
                extra={"event_id": 5030},
            )
        with self._lock:
            self._release_reason = None
        self._released.set()

    def _do_requeue(
        self, nodes: ClusterNodes, s: Snapshot, reason: str, leader_version: int
    ) -> None:
        assert s.my_node is not None
        with self._lock:
            self._requeue = None  # asked once: the placement watch asks again if still due
        moved = nodes.requeue(
            s.my_node, Candidate.prefix(self.name, self.config.priority), leader_version
        )
        if moved is None:
            return
        self._my_node = moved
        log.info(
            "[5013] %s moved to the back of the election line as %s: %s",
            self.name,
            moved,
            reason,
            extra={"event_id": 5013},
        )

    def _clear_dead(self, nodes: ClusterNodes, s: Snapshot, reason: str, version: int) -> None:
        dead = s.leader
        assert dead is not None
        remaining = tuple(c for c in s.line if c.node != dead.node)
        nxt = successor(remaining, s.switchover)
        if nxt is not None and nxt.node == s.my_node:
            # We are next anyway: clear and take over in one transaction.
            done = self._take(nodes, s, self._clock(), reason, clear=(dead, version))
        else:
            done = nodes.clear_dead(dead, version)
        self._dead_attempts += 1
        if done or self._dead_attempts >= 3:
            with self._lock:
                if self._dead_leader is not None and self._dead_leader.czxid == dead.czxid:
                    self._dead_leader = None
            self._dead_attempts = 0
        if not done:
            log.info(
                "[5023] crashed leader %s not cleared (already gone, or a race)",
                dead.name,
                extra={"event_id": 5023},
            )
            return
        log.warning(
            "[5020] cleared crashed leader %s (epoch %d): %s",
            dead.name,
            dead.epoch,
            reason,
            extra={"event_id": 5020},
        )

    # -- helpers ---------------------------------------------------------------------------

    def _become_leader(self, epoch: int, started: float, reason: str) -> None:
        self._lease.grant(epoch, started)
        self._elected_at = started
        self._holdoff_until = 0.0
        self._crash_path.close()
        log.info(
            "[5001] %s elected leader of %s with epoch %d: %s",
            self.name,
            self.config.cluster,
            epoch,
            reason,
            extra={"event_id": 5001},
        )
        self._set_role(Role.LEADER, f"{reason} (epoch {epoch})")
        self._notify("on_elected", epoch)

    def _demote(self, new: Role, reason: str) -> None:
        with self._lock:
            was_leader = self._role is Role.LEADER
        self._lease.end()
        if was_leader:
            log.warning("[5002] %s demoted: %s", self.name, reason, extra={"event_id": 5002})
            self._notify("on_demoted", reason)
        self._set_role(new, reason)

    def _set_role(self, new: Role, reason: str) -> None:
        with self._lock:
            old, self._role = self._role, new
        if old is new:
            return
        self.transitions += 1
        if new is Role.LEADER:
            # Written with the role below: no extra write for what a leader obviously is.
            self._publish_fast_path((FastPath.IDLE, ""), write=False)
        log.info(
            "[5003] %s role %s -> %s: %s",
            self.name,
            old.value,
            new.value,
            reason,
            extra={"event_id": 5003, "role": new.value, "reason": reason},
        )
        self._notify("on_role_change", old, new, reason)
        self._write_member()

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
