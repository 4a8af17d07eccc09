"""One member's ZooKeeper session as the elector's loop sees it: opened, watched, renewed.

    session = Session(config, paths, acl, lock=lock, wake=wake, lease=lease, views=views)
    client = session.connect(client_for)     # started; ElectionError if not reached in time
    session.join(client, register)           # layout + our member node (NoAuth: NotAuthorizedError)
    reason = session.take_interrupted()      # the loop: SUSPENDED or LOST since its last look
    session.revive(client)                   # kazoo's connection loop died: start it again
    if session.renewed(client.client_id[0]): ...   # a new session: our ephemeral nodes are gone
    view = session.read(nodes, own_path, session_id)   # a full read arms the watches below
    deleted = session.take_leader_deleted()  # the loop: a watch saw /leader deleted
    session.close(client)                    # stop: quietly, the session's nodes go with it

Kazoo calls :meth:`Session.on_connection_state` and the watches on its own
threads: they only revoke the lease, mark the last full read stale
(:class:`election._view_cache.ViewCache`), set a flag under the elector's lock
and wake the loop; they never block. The loop takes each flag once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import EventType, KazooState, WatchedEvent
from kazoo.security import ACL

from election._cluster_nodes import ClusterNodes, ClusterView
from election._config import ElectionConfig
from election._errors import ElectionError, NotAuthorizedError
from election._lease import Lease
from election._paths import ClusterPaths
from election._view_cache import ViewCache
from election._zk import ensure_layout, transient_zk_retry

__all__ = ["Session"]

log = logging.getLogger("pfxha.election")


class Session:
    """The session our ephemeral nodes belong to, and what kazoo's threads report on it.

    ``lock``, ``wake``, ``lease`` and ``views`` are the elector's own: the flags
    here are guarded by the elector's lock, as the rest of its state is.
    """

    def __init__(
        self,
        config: ElectionConfig,
        paths: ClusterPaths,
        acl: Sequence[ACL],
        *,
        lock: threading.RLock,
        wake: threading.Event,
        lease: Lease,
        views: ViewCache,
    ) -> None:
        self.config = config
        self.paths = paths
        self._acl = acl
        self._lock = lock
        self._wake = wake
        self._lease = lease
        self._views = views
        # The session our ephemeral nodes belong to (start and the loop only: no lock).
        self.id: int | None = None
        self._interrupted: str | None = None
        self._leader_deleted = False

    # -- start and stop ------------------------------------------------------------------

    def connect(self, client_factory: Callable[[ElectionConfig], KazooClient]) -> KazooClient:
        """A started client whose connection state we follow.

        Raises :class:`ElectionError` if ZooKeeper cannot be reached within
        ``connection_timeout``.
        """
        if self.config.auth_digest is None:
            log.warning(
                "[5040] no ZooKeeper credentials for cluster %s: nodes are open to any "
                "client (configure auth_digest to restrict writes to connectors)",
                self.config.cluster,
                extra={"event_id": 5040},
            )
        client = client_factory(self.config)
        client.add_listener(self.on_connection_state)
        try:
            client.start(timeout=self.config.connection_timeout)
        except KazooTimeoutError as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise ElectionError(
                f"could not connect to ZooKeeper at {self.config.hosts} within "
                f"connection_timeout={self.config.connection_timeout}s"
            ) from exc
        return client

    def join(self, client: KazooClient, register: Callable[[], None]) -> None:
        """Create the layout, note our session, ``register`` our member node.

        Raises :class:`NotAuthorizedError` if ZooKeeper refuses our writes.
        """
        ensure_layout(client, self.paths, self._acl)
        self.id = client.client_id[0]
        try:
            # A connection hiccup at start-up is retried, not fatal (CI saw one).
            transient_zk_retry(register)()
        except NoAuthError as exc:
            raise NotAuthorizedError(
                f"ZooKeeper refused to register {self.config.name} under {self.paths.members}: "
                "NoAuth (credentials missing or not a connector identity)"
            ) from exc

    def close(self, client: KazooClient) -> None:
        """Stop and close ``client``, whatever state it is in (a graceful stop)."""
        with contextlib.suppress(Exception):
            client.stop()
            client.close()

    # -- the loop ------------------------------------------------------------------------

    def revive(self, client: KazooClient) -> bool:
        """Start ``client``'s connection again if its loop ended without a stop: True if so.

        kazoo's connection loop ends on an exception it does not handle, and the
        client then never reconnects: this member would stay demoted for good. One
        CI run saw it after a session expiry ("xids do not match", kazoo issue #254;
        kazoo 2.11). Only the loop's thread tells: the client is not stopped, its
        state is LOST, as after any expiry.
        """
        routine = client._connection._connection_routine
        if routine is None or routine.is_alive() or client._stopped.is_set():
            return False
        log.warning(
            "[5097] %s: ZooKeeper client's connection loop ended on its own; starting it again",
            self.config.name,
            extra={"event_id": 5097},
        )
        client.start_async()
        return True

    def renewed(self, session_id: int) -> bool:
        """True once per new session (everything ephemeral we had is gone)."""
        if session_id == self.id:
            return False
        self.id = session_id
        return True

    def read(self, nodes: ClusterNodes, own_path: str | None, session_id: int) -> ClusterView:
        """The election's nodes: re-read, or as last read if a lean check shows them so."""
        if own_path is not None:
            last = self._views.reusable(session_id)
            if last is not None and nodes.unchanged(own_path, last):
                return last
        self._views.reading()
        view = nodes.read(own_path, self.lease_watch(), self.on_watch)
        if own_path is not None:
            self._views.remember(session_id, view)
        else:
            self._views.forget()
        return view

    def take_interrupted(self) -> str | None:
        """Why the connection was interrupted since the last call (None: it was not)."""
        with self._lock:
            interrupted, self._interrupted = self._interrupted, None
        return interrupted

    def take_leader_deleted(self) -> bool:
        """Whether a watch saw /leader deleted since the last call."""
        with self._lock:
            deleted, self._leader_deleted = self._leader_deleted, False
        return deleted

    # -- kazoo callbacks (kazoo's threads: set flags, never block) ----------------------

    def on_connection_state(self, state: KazooState) -> None:
        self._views.changed()
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            self._lease.revoke()
            with self._lock:
                self._interrupted = (
                    "ZooKeeper session lost"
                    if state == KazooState.LOST
                    else "ZooKeeper connection suspended"
                )
        self._wake.set()

    def lease_watch(self) -> Callable[[WatchedEvent], None]:
        """The watch for /leader and our election node (see :meth:`Lease.watcher`)."""
        return self._lease.watcher(self._on_lease_node_event)

    def _on_lease_node_event(self, event: WatchedEvent) -> None:
        self._views.changed()
        if event.type == EventType.DELETED and event.path == self.paths.leader:
            with self._lock:
                self._leader_deleted = True
        self._wake.set()

    def on_watch(self, _event: object) -> None:
        self._views.changed()
        self._wake.set()
