"""The elector: one member's thin executor around :func:`election._decide.decide`.

    elector = Elector(ElectionConfig(hosts=zk, cluster="lab", name="c1"), observers=[obs])
    elector.start()                 # connects, registers, joins the line (raises on bad config)
    epoch = elector.fresh_epoch()   # int iff we lead with a fresh lease right now, else None
    elector.release("switchover")   # hand the lease over now, rejoin as a standby later
    elector.stop()                  # graceful: release, unregister, close the session

One background thread runs the loop: read a snapshot of the cluster's nodes,
``decide()``, execute that one decision, wait for a watch, a connection-state
change or the next heartbeat. Observers are called from that thread.

Why the lease is "fresh": after every successful round trip the leader records the
time *before* it sent the request. ZooKeeper cannot have expired the session
earlier than ``session_timeout`` after that moment, so trusting the lease for
``lease_validity`` (at most 2/3 of the session timeout) is safe even if the
process was paused in between (a monotonic clock keeps running while stopped).
SUSPENDED, LOST, or the deletion of ``/leader`` or our election node revoke
freshness at once, from kazoo's own thread, before the loop even wakes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import EventType, KazooState, WatchedEvent

from election._config import ElectionConfig
from election._decide import Action, Decision, Snapshot, decide, successor
from election._errors import ElectionError, NotAuthorizedError
from election._liveness import LivenessProbe, LivenessServer, source_address_towards
from election._model import (
    Candidate,
    ElectionObserver,
    FastPath,
    LeaderInfo,
    MemberInfo,
    Role,
    SwitchoverRequest,
    utc_now_iso,
)
from election._paths import ClusterPaths
from election._zk import client_for, cluster_acl, ensure_layout

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
        self._role = Role.STOPPED
        self._epoch: int | None = None
        self._lease_ok = False
        # One watch callback per leadership (see _lease_watch): kazoo keeps watchers in a
        # set, so reusing the callable keeps re-armed watches from piling up.
        self._lease_watcher: tuple[int | None, Callable[[WatchedEvent], None]] | None = None
        self._confirmed_at = -math.inf
        self._interrupted: str | None = None
        self._session_id: int | None = None
        self._my_node: str | None = None
        self._registered = False
        self._holdoff_until = 0.0
        self._dead_leader: LeaderInfo | None = None
        self._probe: LivenessProbe | None = None
        self._server: LivenessServer | None = None
        # (bind, advertised) address of our liveness socket, settled at start().
        self._liveness_endpoint: tuple[str, str] | None = None
        # What the member node says about our fast path (rewritten only on change).
        self._fast_path = (FastPath.IDLE, "" if config.fast_path else "fast path off")
        self._release_reason: str | None = None
        self._epoch_cache: tuple[int, int] | None = None  # (value, version) of /epoch
        self._lease_version = -1
        self._epoch_read_next = False
        self._dead_attempts = 0
        self._last_snapshot: tuple[int, Snapshot, int] | None = None
        self._leader_deleted = False
        self._released = threading.Event()
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
        with self._lock:
            client = self._client
            if self._role is not Role.LEADER or not self._lease_ok or self._epoch is None:
                return None
            if client is None or client.state != KazooState.CONNECTED:
                return None
            if self._clock() - self._confirmed_at > self.config.lease_s:
                return None
            return self._epoch

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
        try:
            if self.config.fast_path:
                self._liveness_endpoint = self._settle_liveness_endpoint()
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
            self._client = None
            raise
        self._set_role(Role.STANDBY, "joined the election")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"pfxha-elector-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def release(self, reason: str = "released", timeout: float = 5.0) -> bool:
        """Give up the lease now and rejoin as a standby; False if we were not leading."""
        with self._lock:
            if self._role is not Role.LEADER:
                return False
            self._lease_ok = False  # stop acting before anything else happens
            self._release_reason = reason
            self._released.clear()
        self._wake.set()
        if threading.current_thread() is self._thread:
            return True  # called from an observer: the loop releases right after it returns
        return self._released.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: hand the lease over at once, unregister, close the session."""
        with self._lock:
            self._lease_ok = False
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        client = self._client
        if client is not None and client.state == KazooState.CONNECTED:
            with contextlib.suppress(*_TRANSIENT):
                if self._role is Role.LEADER:
                    self._demote(Role.STANDBY, "stopping")
                    # Hand over in one round trip; closing the session removes the rest.
                    txn = client.transaction()
                    txn.delete(self.paths.leader, version=self._lease_version)
                    if self._my_node is not None:
                        txn.delete(self.paths.candidate(self._my_node))
                    if not _failed(self._sync(txn.commit_async())):
                        self._my_node = None
                self._delete_own_nodes(client, leader=True, member=True)
        if self._role is Role.LEADER:
            self._demote(Role.STOPPED, "stopping")
        self._close_probe()
        self._stop_server()
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop()
                client.close()
        self._client = None
        if self._role is not Role.STOPPED:
            self._set_role(Role.STOPPED, "stopped")

    # -- kazoo callbacks (kazoo's threads: set flags, never block) ----------------------

    def _on_connection_state(self, state: KazooState) -> None:
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            with self._lock:
                self._lease_ok = False
                self._interrupted = (
                    "ZooKeeper session lost"
                    if state == KazooState.LOST
                    else "ZooKeeper connection suspended"
                )
        self._wake.set()

    def _lease_watch(self) -> Callable[[WatchedEvent], None]:
        """The watch callback for /leader and our election node, bound to this leadership.

        A watch set while standing by may fire after we took the lease: the crash
        takeover deletes the dead leader's /leader in the same transaction that creates
        ours, and the stale DELETED event arrives once we already lead. Only a watch
        armed during *this* leadership may revoke *this* lease; an older one just wakes
        the loop (and tells a standby the lease is free).
        """
        epoch = self._epoch if self._role is Role.LEADER else None
        if self._lease_watcher is not None and self._lease_watcher[0] == epoch:
            return self._lease_watcher[1]

        def on_event(event: WatchedEvent) -> None:
            self._on_lease_node_event(event, armed_for=epoch)

        self._lease_watcher = (epoch, on_event)
        return on_event

    def _on_lease_node_event(self, event: WatchedEvent, armed_for: int | None = None) -> None:
        if event.type == EventType.DELETED:
            with self._lock:
                if armed_for is not None and armed_for == self._epoch:
                    self._lease_ok = False
                if event.path == self.paths.leader:
                    self._leader_deleted = True
        self._wake.set()

    def _on_watch(self, _event: object) -> None:
        self._wake.set()

    def _on_leader_socket_closed(self, leader: LeaderInfo) -> None:
        with self._lock:
            self._dead_leader = leader
        self._wake.set()

    def _on_probe_state(self, _leader: LeaderInfo, _state: FastPath, _reason: str) -> None:
        self._wake.set()  # the loop publishes it (our member node is written from there)

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
        client = self._client
        assert client is not None
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
        if self._try_fast_takeover(client, session_id):
            return True

        started = self._clock()
        own_path = (
            self.paths.candidate(self._my_node)
            if self._role is Role.LEADER and self._my_node is not None
            else None
        )
        children, leader, leader_version, request = self._read_snapshot(client, own_path)
        line = tuple(sorted(c for c in map(Candidate.parse, children) if c is not None))
        if self._my_node not in children:
            self._my_node = self._adopt_own_node(client, line, session_id)
        if leader is not None and (
            self._epoch_cache is None or leader.epoch > self._epoch_cache[0]
        ):
            # The epoch node is written once per leadership from "0" at version 0, so its
            # version equals its value; a wrong guess only fails the CAS and forces a read.
            self._epoch_cache = (leader.epoch, leader.epoch)
        leader_is_mine = (
            leader is not None and leader.session_id == session_id and leader.name == self.name
        )
        holdoff = self._clock() < self._holdoff_until and (
            leader is None or leader.name == self.name
        )
        with self._lock:
            dead = self._dead_leader
            release = self._release_reason
        snapshot = Snapshot(
            me=self.name,
            eligible=not self.config.nofailover,
            role=self._role,
            connected=True,
            my_node=self._my_node,
            line=line,
            leader=leader,
            leader_is_mine=leader_is_mine,
            switchover=request,
            dead_leader=dead,
            holdoff=holdoff,
            release_requested=release,
        )
        self._last_snapshot = (session_id, snapshot, leader_version)
        decision = decide(snapshot)
        if self._role is Role.SUSPENDED and decision.action is not Action.RESUME:
            self._set_role(Role.STANDBY, "reconnected to ZooKeeper")
        self._watch_leader(leader if not leader_is_mine else None)
        self._publish_fast_path(self._fast_path_seen(leader, leader_is_mine))
        return self._execute(client, decision, snapshot, leader_version, started)

    def _try_fast_takeover(self, client: KazooClient, session_id: int) -> bool:
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
                self._clear_dead(client, snapshot, decision.reason, leader_version)
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
                self._take(client, snapshot, self._clock(), decision.reason)
                return True
        return False

    def _execute(
        self,
        client: KazooClient,
        decision: Decision,
        s: Snapshot,
        leader_version: int,
        started: float,
    ) -> bool:
        action = decision.action
        if action is Action.WAIT:
            return False
        if action is Action.CONFIRM:
            assert s.leader is not None
            if s.leader.epoch != self._epoch:
                self._step_down(client, s, f"/leader shows epoch {s.leader.epoch}")
                return True
            with self._lock:
                self._confirmed_at = started
            return False
        if action is Action.JOIN:
            prefix = Candidate.prefix(self.name, self.config.priority)
            path = self._sync(
                client.create_async(
                    self.paths.candidate(prefix), b"", acl=self._acl, ephemeral=True, sequence=True
                )
            )
            self._my_node = path.rsplit("/", 1)[1]
            log.info(
                "[5010] %s joined the election line as %s",
                self.name,
                self._my_node,
                extra={"event_id": 5010},
            )
            return True
        if action is Action.TAKE:
            self._take(client, s, started, decision.reason)
            return True
        if action is Action.RESUME:
            self._resume(client, leader_version, started, decision.reason)
            return True
        if action is Action.STEP_DOWN:
            self._step_down(client, s, decision.reason, leader_version)
            return True
        if action is Action.RELEASE:
            self._release(client, s, decision.reason, leader_version)
            return True
        if action is Action.DROP_SWITCHOVER:
            assert s.switchover is not None
            log.info(
                "[5031] switchover request dropped: %s", decision.reason, extra={"event_id": 5031}
            )
            with contextlib.suppress(NoNodeError, KazooException):
                client.delete(self.paths.switchover, version=s.switchover.version)
            return True
        if action is Action.CLEAR_DEAD:
            self._clear_dead(client, s, decision.reason, leader_version)
            return True
        raise AssertionError(f"unhandled action {action}")  # pragma: no cover

    # -- actions -------------------------------------------------------------------------

    def _take(
        self,
        client: KazooClient,
        s: Snapshot,
        started: float,
        reason: str,
        clear: tuple[LeaderInfo, int] | None = None,
    ) -> bool:
        """New epoch + /leader in one transaction (first removing a crashed leader's nodes)."""
        assert s.my_node is not None
        value, version = self._epoch_for_cas(client)
        epoch = value + 1
        info = self._leader_info(epoch, s.my_node)
        txn = client.transaction()
        if clear is not None:
            self._add_clear_ops(txn, *clear)
        txn.check(self.paths.candidate(s.my_node), -1)
        txn.set_data(self.paths.epoch, str(epoch).encode(), version=version)
        txn.create(self.paths.leader, info.to_json(), acl=self._acl, ephemeral=True)
        if s.switchover is not None:
            txn.delete(self.paths.switchover, version=s.switchover.version)
        if _failed(self._sync(txn.commit_async())):
            log.debug("take lease lost a race or a stale epoch guess; re-evaluating")
            self._epoch_cache = None
            self._epoch_read_next = True
            return False
        self._epoch_cache = (epoch, version + 1)
        self._lease_version = 0
        self._become_leader(epoch, started, reason)
        return True

    def _resume(
        self, client: KazooClient, leader_version: int, started: float, reason: str
    ) -> None:
        assert self._my_node is not None
        value, version = self._epoch_for_cas(client)
        epoch = value + 1
        info = self._leader_info(epoch, self._my_node)
        txn = client.transaction()
        txn.check(self.paths.candidate(self._my_node), -1)
        txn.set_data(self.paths.epoch, str(epoch).encode(), version=version)
        txn.set_data(self.paths.leader, info.to_json(), version=leader_version)
        if _failed(self._sync(txn.commit_async())):
            log.debug("resume lost a race or a stale epoch guess; re-evaluating")
            self._epoch_cache = None
            self._epoch_read_next = True
            return
        self._epoch_cache = (epoch, version + 1)
        self._lease_version = leader_version + 1
        self._become_leader(epoch, started, reason)

    def _leader_info(self, epoch: int, node: str) -> LeaderInfo:
        """What /leader says of us under ``epoch``: our liveness socket and its incarnation."""
        liveness, incarnation = self._liveness_socket()
        return LeaderInfo(
            self.name,
            epoch,
            utc_now_iso(),
            liveness=liveness,
            node=node,
            incarnation=incarnation,
        )

    def _epoch_for_cas(self, client: KazooClient) -> tuple[int, int]:
        """(value, version) of /epoch: the cached guess, or read after a failed CAS."""
        if self._epoch_cache is not None and not self._epoch_read_next:
            return self._epoch_cache
        raw, stat = self._sync(client.get_async(self.paths.epoch))
        self._epoch_read_next = False
        self._epoch_cache = (int(raw or b"0"), int(stat.version))
        return self._epoch_cache

    def _step_down(
        self, client: KazooClient, s: Snapshot, reason: str, leader_version: int = -1
    ) -> None:
        if self._role is Role.LEADER:
            self._demote(Role.STANDBY, reason)
        if s.leader_is_mine:
            with contextlib.suppress(NoNodeError, KazooException):
                client.delete(self.paths.leader, version=leader_version)
        self._stop_server()

    def _release(self, client: KazooClient, s: Snapshot, reason: str, leader_version: int) -> None:
        release_reason = self._release_reason
        self._demote(Role.STANDBY, release_reason or reason)
        txn = client.transaction()
        txn.delete(self.paths.leader, version=leader_version)
        if self._my_node is not None:
            txn.delete(self.paths.candidate(self._my_node))
        if s.switchover is not None and s.switchover.to is None:
            txn.delete(self.paths.switchover, version=s.switchover.version)
        results = self._sync(txn.commit_async())
        self._stop_server()
        if not _failed(results):
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

    def _add_clear_ops(self, txn: Any, dead: LeaderInfo, version: int) -> None:
        txn.delete(self.paths.leader, version=version)
        # The dead leader's own election node (named in /leader): if its session already
        # ended, this delete fails and so does the whole transaction.
        if dead.node is not None:
            txn.delete(self.paths.candidate(dead.node))

    def _clear_dead(self, client: KazooClient, s: Snapshot, reason: str, version: int) -> None:
        dead = s.leader
        assert dead is not None
        remaining = tuple(c for c in s.line if c.node != dead.node)
        nxt = successor(remaining, s.switchover)
        if nxt is not None and nxt.node == s.my_node:
            # We are next anyway: clear and take over in one transaction.
            done = self._take(client, s, self._clock(), reason, clear=(dead, version))
        else:
            txn = client.transaction()
            self._add_clear_ops(txn, dead, version)
            done = not _failed(self._sync(txn.commit_async()))
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
        with self._lock:
            self._epoch = epoch
            self._lease_ok = True
            self._confirmed_at = started
            self._holdoff_until = 0.0
        self._close_probe()
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
            self._lease_ok = False
            self._epoch = None
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
        if new is Role.LEADER and self.config.fast_path:
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
        client = self._client
        if self._registered and client is not None and client.state == KazooState.CONNECTED:
            with contextlib.suppress(Exception):
                client.set_async(self.paths.member(self.name), self._member_info().to_json())

    def _notify(self, method: str, *args: Any) -> None:
        for observer in list(self._observers):
            try:
                getattr(observer, method)(*args)
            except Exception:
                log.exception(
                    "[5090] observer %r failed in %s", observer, method, extra={"event_id": 5090}
                )

    def _member_info(self) -> MemberInfo:
        return MemberInfo(
            name=self.name,
            host=self.config.member_host,
            pid=os.getpid(),
            priority=self.config.priority,
            nofailover=self.config.nofailover,
            version=self.config.member_version,
            started_at=self._started_at,
            role=self._role.value,
            fast_path=self._fast_path[0].value,
            fast_path_reason=self._fast_path[1],
        )

    def _register(self) -> None:
        client = self._client
        assert client is not None
        path = self.paths.member(self.name)
        data = self._member_info().to_json()
        try:
            client.create(path, data, acl=self._acl, ephemeral=True)
        except NodeExistsError:
            stat = client.exists(path)
            if stat is not None and stat.ephemeralOwner == client.client_id[0]:
                client.set(path, data)
            else:
                # A previous incarnation of this member whose session has not expired yet.
                log.info("[5011] replacing stale member node %s", path, extra={"event_id": 5011})
                with contextlib.suppress(NoNodeError):
                    client.delete(path)
                client.create(path, data, acl=self._acl, ephemeral=True)
        self._registered = True

    def _adopt_own_node(
        self, client: KazooClient, line: tuple[Candidate, ...], session_id: int
    ) -> str | None:
        """Find an election node of ours in this session (e.g. a create whose reply got lost)."""
        for candidate in line:
            if candidate.name == self.name:
                stat = client.exists(self.paths.candidate(candidate.node))
                if stat is not None and stat.ephemeralOwner == session_id:
                    return candidate.node
        return None

    def _sync(self, result: Any) -> Any:
        """Wait for a kazoo async result, but never longer than the session timeout.

        kazoo queues requests while reconnecting; an unbounded wait would hold the loop
        (and the SUSPENDED/LOST bookkeeping) hostage for as long as a quorum is gone.
        A request that times out here may still run later: every action is safe to
        have happened or not, the next snapshot shows which.
        """
        return result.get(timeout=self.config.session_timeout)

    def _read_snapshot(
        self, client: KazooClient, own_path: str | None
    ) -> tuple[list[str], LeaderInfo | None, int, SwitchoverRequest | None]:
        """Children, /leader and /switchover (with watches) in one pipelined round trip."""
        children_async = client.get_children_async(self.paths.election, watch=self._on_watch)
        lease_watch = self._lease_watch()
        leader_watch = client.exists_async(self.paths.leader, watch=lease_watch)
        leader_async = client.get_async(self.paths.leader)
        request_watch = client.exists_async(self.paths.switchover, watch=self._on_watch)
        request_async = client.get_async(self.paths.switchover)
        own_watch = client.exists_async(own_path, watch=lease_watch) if own_path else None
        children: list[str] = self._sync(children_async)
        self._sync(leader_watch)
        self._sync(request_watch)
        if own_watch is not None:
            self._sync(own_watch)
        leader: LeaderInfo | None = None
        leader_version = -1
        with contextlib.suppress(NoNodeError):
            raw, stat = self._sync(leader_async)
            leader = LeaderInfo.parse(raw, czxid=stat.czxid, session_id=stat.ephemeralOwner)
            leader_version = stat.version
        request: SwitchoverRequest | None = None
        with contextlib.suppress(NoNodeError):
            raw, stat = self._sync(request_async)
            request = SwitchoverRequest.parse(raw, version=stat.version)
        return children, leader, leader_version, request

    def _delete_own_nodes(self, client: KazooClient, *, leader: bool, member: bool) -> None:
        """Best-effort cleanup at stop; bounded waits (closing the session removes the rest)."""
        session_id = client.client_id[0] if client.client_id else None
        if leader:
            with contextlib.suppress(NoNodeError):
                stat = self._sync(client.exists_async(self.paths.leader))
                if stat is not None and stat.ephemeralOwner == session_id:
                    self._sync(client.delete_async(self.paths.leader, version=stat.version))
        if self._my_node is not None:
            with contextlib.suppress(NoNodeError):
                self._sync(client.delete_async(self.paths.candidate(self._my_node)))
            self._my_node = None
        if member:
            with contextlib.suppress(NoNodeError):
                self._sync(client.delete_async(self.paths.member(self.name)))

    def _settle_liveness_endpoint(self) -> tuple[str, str]:
        """(bind, advertised) address of the liveness socket we serve while leading.

        By default the address of our route to ZooKeeper: the members reach the same
        ZooKeeper, so they can most likely reach us there (a loopback address would
        only be reachable from this host).
        """
        hosts = self.config.hosts
        try:
            bind, advertise = self.config.liveness_addresses(lambda: source_address_towards(hosts))
        except OSError as exc:
            raise ElectionError(
                f"cannot find the local address that reaches ZooKeeper ({exc}): set "
                "liveness_advertise (and liveness_host) for the fast path, or turn it off"
            ) from exc
        with contextlib.suppress(ValueError, OSError):
            if ipaddress.ip_address(advertise).is_loopback:
                towards_zk = source_address_towards(hosts)
                if not ipaddress.ip_address(towards_zk).is_loopback:
                    log.warning(
                        "[5025] liveness socket advertised on loopback %s while ZooKeeper is "
                        "reached from %s: members on other hosts cannot verify it, and a "
                        "crash of %s as leader is detected by the session timeout there",
                        advertise,
                        towards_zk,
                        self.name,
                        extra={"event_id": 5025},
                    )
        return bind, advertise

    def _liveness_socket(self) -> tuple[str | None, str | None]:
        """(address, incarnation) of our liveness socket for /leader; (None, None) without.

        A socket that cannot be bound (a fixed port taken) costs the fast path, not the
        leadership: the standbys see "advertises no liveness socket" and say so.
        """
        if not self.config.fast_path or self._liveness_endpoint is None:
            return None, None
        if self._server is None:
            bind, advertise = self._liveness_endpoint
            server = LivenessServer(
                bind, name=self.name, port=self.config.liveness_port, advertise=advertise
            )
            try:
                server.start()
            except OSError as exc:
                log.error(
                    "[5026] %s cannot serve its liveness socket on %s port %d (%s): leading "
                    "without the fast path",
                    self.name,
                    bind,
                    self.config.liveness_port,
                    exc,
                    extra={"event_id": 5026},
                )
                return None, None
            self._server = server
        return self._server.address, self._server.incarnation

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _watch_leader(self, leader: LeaderInfo | None) -> None:
        """Keep one liveness probe on the current leader (standbys, fast path only)."""
        if not self.config.fast_path or leader is None:
            self._close_probe()
            return
        # A leader without a (verifiable) liveness socket still gets a probe: it
        # connects nowhere and just says why the fast path is unavailable.
        watched = self._probe.leader if self._probe is not None else None
        if (
            watched is not None
            and watched.czxid == leader.czxid
            and (watched.liveness, watched.incarnation) == (leader.liveness, leader.incarnation)
        ):
            return
        self._close_probe()
        self._probe = LivenessProbe(
            leader,
            self._on_leader_socket_closed,
            self.config.liveness_connect_timeout,
            on_state=self._on_probe_state,
        )
        self._probe.start()

    def _close_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def _fast_path_seen(
        self, leader: LeaderInfo | None, leader_is_mine: bool
    ) -> tuple[FastPath, str] | None:
        """Our fast-path state after this snapshot; None to keep the published one.

        Between leaders, and until a new leader's probe has settled, the last state
        stands: a normal takeover then costs no member-node write at all.
        """
        if not self.config.fast_path:
            return None
        if self._role is Role.LEADER or leader_is_mine:
            return FastPath.IDLE, ""
        status = self._probe.status if self._probe is not None else None
        if leader is None or status is None:
            return None
        return status

    def _publish_fast_path(self, seen: tuple[FastPath, str] | None, *, write: bool = True) -> None:
        if seen is None or seen[0] is self._fast_path[0]:
            return
        self._fast_path = seen
        state, reason = seen
        log.info(
            "[5027] %s fast path %s%s",
            self.name,
            state.value,
            f": {reason}" if reason else "",
            extra={"event_id": 5027, "fast_path": state.value},
        )
        self._notify("on_fast_path_change", state, reason)
        client = self._client
        if write and self._registered and client is not None:
            with contextlib.suppress(Exception):
                client.set_async(self.paths.member(self.name), self._member_info().to_json())


def _failed(results: list[Any]) -> bool:
    return any(isinstance(r, Exception) for r in results)
