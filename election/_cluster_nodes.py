"""Every read and write the elector makes, one method per round trip.

    nodes = ClusterNodes(client, ClusterPaths("lab"), acl, timeout=1.0)
    view = nodes.read(own_path=None, lease_watch=w, wake=wake)   # one pipelined read
    same = nodes.unchanged(own_path, view)                      # a leader's lean heartbeat
    node = nodes.join(Candidate.prefix("c1", priority=0))       # our election node
    path = nodes.take(my_node, epoch=8, epoch_version=7, leader=info, entry=entry)
    nodes.trim_history(path)                                    # async, oldest beyond the bound
    ok = nodes.release(leader_version=0, my_node=node, switchover=None)

Each method is one ZooKeeper round trip (a transaction or pipelined requests),
so every action the elector takes is atomic: it happened entirely or not at
all, and the next snapshot shows which. Waits are bounded by ``timeout`` (the
session timeout): kazoo queues requests while reconnecting, and an unbounded
wait would hold the loop hostage for as long as a quorum is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.protocol.states import WatchedEvent

from election._acl import shared_acl
from election._history import HISTORY_LENGTH, history_seq
from election._model import Candidate, HistoryEntry, LeaderInfo, MemberInfo, SwitchoverRequest
from election._paths import ClusterPaths

__all__ = ["ClusterNodes", "ClusterView"]


@dataclass(frozen=True)
class ClusterView:
    """The election's nodes as one pipelined read saw them (contents already parsed)."""

    children: tuple[str, ...]
    line: tuple[Candidate, ...]
    leader: LeaderInfo | None
    leader_version: int
    switchover: SwitchoverRequest | None
    # Whether /leader exists (parsed or not) and the session that owns it (0: a
    # persistent node, which no member ever creates).
    leader_exists: bool = False
    leader_owner: int = 0
    # /pause exists: automatic failover is off (`pfxha pause`).
    paused: bool = False

    @property
    def leader_garbled(self) -> bool:
        return self.leader_exists and self.leader is None

    @property
    def leader_persistent(self) -> bool:
        return self.leader_exists and self.leader_owner == 0


class ClusterNodes:
    """The nodes under ``/pfxha/<cluster>`` as one member reads and writes them."""

    def __init__(
        self, client: KazooClient, paths: ClusterPaths, acl: Sequence[Any], timeout: float
    ) -> None:
        self.client = client
        self.paths = paths
        self.acl = list(acl)
        self.timeout = timeout

    def _wait(self, result: Any) -> Any:
        return result.get(timeout=self.timeout)

    def _commit(self, txn: Any) -> bool:
        return self._commit_results(txn) is not None

    def _commit_results(self, txn: Any) -> list[Any] | None:
        """The transaction's per-operation results, or None if it failed (nothing done)."""
        results: list[Any] = self._wait(txn.commit_async())
        return None if any(isinstance(r, Exception) for r in results) else results

    def _add_pause_guard(self, txn: Any) -> None:
        # Fails the whole transaction if /pause exists, however stale the snapshot that
        # decided to act: a pause holds from the moment `pfxha pause` returns.
        txn.create(self.paths.pause, b"", acl=self.acl)
        txn.delete(self.paths.pause)

    # -- reads ----------------------------------------------------------------------------

    def read(
        self,
        own_path: str | None,
        lease_watch: Callable[[WatchedEvent], None],
        wake: Callable[[WatchedEvent], None],
    ) -> ClusterView:
        """Children, /leader, /switchover and /pause (with watches) in one pipelined round trip.

        Contents are untrusted: a /leader or /switchover that does not parse reads as
        absent (see :meth:`LeaderInfo.parse`), a child that is not an election node
        is left out of the line.
        """
        client = self.client
        children_async = client.get_children_async(self.paths.election, watch=wake)
        leader_watch = client.exists_async(self.paths.leader, watch=lease_watch)
        leader_async = client.get_async(self.paths.leader)
        request_watch = client.exists_async(self.paths.switchover, watch=wake)
        request_async = client.get_async(self.paths.switchover)
        pause_watch = client.exists_async(self.paths.pause, watch=wake)
        own_watch = client.exists_async(own_path, watch=lease_watch) if own_path else None
        children: list[str] = self._wait(children_async)
        self._wait(leader_watch)
        self._wait(request_watch)
        paused = self._wait(pause_watch) is not None
        if own_watch is not None:
            self._wait(own_watch)
        leader: LeaderInfo | None = None
        leader_version = -1
        leader_exists, leader_owner = False, 0
        with contextlib.suppress(NoNodeError):
            raw, stat = self._wait(leader_async)
            leader = LeaderInfo.parse(raw, czxid=stat.czxid, session_id=stat.ephemeralOwner)
            leader_version = stat.version
            leader_exists, leader_owner = True, int(stat.ephemeralOwner)
        request: SwitchoverRequest | None = None
        with contextlib.suppress(NoNodeError):
            raw, stat = self._wait(request_async)
            request = SwitchoverRequest.parse(raw, version=stat.version)
        line = tuple(sorted(c for c in map(Candidate.parse, children) if c is not None))
        return ClusterView(
            tuple(children),
            line,
            leader,
            leader_version,
            request,
            leader_exists,
            leader_owner,
            paused,
        )

    def unchanged(self, own_path: str, view: ClusterView) -> bool:
        """One pipelined round trip: /leader (same version and owner) and our own
        election node are still as ``view`` saw them.

        A leader's heartbeat between full reads (:mod:`election._view_cache`): it
        checks directly what the lease rests on rather than trusting that a watch
        callback, dispatched on kazoo's other thread, has already run. No watches
        are set: those of the last full read are still armed.
        """
        client = self.client
        leader_async = client.exists_async(self.paths.leader)
        own_async = client.exists_async(own_path)
        leader = self._wait(leader_async)
        own = self._wait(own_async)
        return (
            leader is not None
            and own is not None
            and leader.version == view.leader_version
            and leader.ephemeralOwner == view.leader_owner
        )

    def read_epoch(self) -> tuple[bytes | None, int]:
        raw, stat = self._wait(self.client.get_async(self.paths.epoch))
        return raw, int(stat.version)

    def own_node(self, line: Sequence[Candidate], name: str, session_id: int) -> str | None:
        """An election node of ours in this session (e.g. a create whose reply got lost)."""
        for candidate in line:
            if candidate.name == name:
                stat = self.client.exists(self.paths.candidate(candidate.node))
                if stat is not None and stat.ephemeralOwner == session_id:
                    return candidate.node
        return None

    # -- membership -----------------------------------------------------------------------

    def register(self, name: str, data: bytes) -> None:
        """Create our member node, replacing one a previous incarnation left behind."""
        client = self.client
        path = self.paths.member(name)
        try:
            client.create(path, data, acl=self.acl, ephemeral=True)
        except NodeExistsError:
            stat = client.exists(path)
            if stat is not None and stat.ephemeralOwner == client.client_id[0]:
                client.set(path, data)
                return
            with contextlib.suppress(NoNodeError):
                client.delete(path)
            client.create(path, data, acl=self.acl, ephemeral=True)

    def update_member(self, name: str, data: bytes) -> None:
        """Rewrite our member node without waiting (a lost write is redone on change)."""
        with contextlib.suppress(Exception):
            self.client.set_async(self.paths.member(name), data)

    def join(self, prefix: str) -> str:
        path: str = self._wait(
            self.client.create_async(
                self.paths.candidate(prefix), b"", acl=self.acl, ephemeral=True, sequence=True
            )
        )
        return path.rsplit("/", 1)[1]

    # -- the lease ------------------------------------------------------------------------

    def take(
        self,
        my_node: str,
        epoch: int,
        epoch_version: int,
        leader: LeaderInfo,
        entry: HistoryEntry,
        *,
        switchover: SwitchoverRequest | None = None,
        clear: tuple[LeaderInfo, int] | None = None,
    ) -> str | None:
        """New epoch + /leader + its history entry in one transaction (first removing a
        crashed leader's nodes), unless paused; the entry's path, or None if not taken."""
        txn = self.client.transaction()
        self._add_pause_guard(txn)
        if clear is not None:
            self._add_clear(txn, *clear)
        txn.check(self.paths.candidate(my_node), -1)
        txn.set_data(self.paths.epoch, str(epoch).encode(), version=epoch_version)
        txn.create(self.paths.leader, leader.to_json(), acl=self.acl, ephemeral=True)
        if switchover is not None:
            txn.delete(self.paths.switchover, version=switchover.version)
        return self._commit_entry(txn, entry)

    def resume(
        self,
        my_node: str,
        epoch: int,
        epoch_version: int,
        leader: LeaderInfo,
        leader_version: int,
        entry: HistoryEntry,
    ) -> str | None:
        """Lead again under a new epoch with the /leader node we still own (paused or not:
        the leader keeps leading); the history entry's path, or None."""
        txn = self.client.transaction()
        txn.check(self.paths.candidate(my_node), -1)
        txn.set_data(self.paths.epoch, str(epoch).encode(), version=epoch_version)
        txn.set_data(self.paths.leader, leader.to_json(), version=leader_version)
        return self._commit_entry(txn, entry)

    def _commit_entry(self, txn: Any, entry: HistoryEntry) -> str | None:
        # Last in the transaction: its result is the sequential node's path.
        txn.create(self.paths.history_entry("h-"), entry.to_json(), acl=self.acl, sequence=True)
        results = self._commit_results(txn)
        if results is None:
            self._repair_history()
            return None
        path: str = results[-1]
        return path

    def _repair_history(self) -> None:
        """Recreate /history if someone deleted it (every take would fail without it),
        with the cluster node's ACL: every member writes its entries there."""
        client = self.client
        with contextlib.suppress(NodeExistsError, KazooException):
            if self._wait(client.exists_async(self.paths.history)) is None:
                base_acl = self._wait(client.get_acls_async(self.paths.base))[0]
                shared = shared_acl(base_acl, self.acl)
                if shared is not None:  # else only the operator can (provision)
                    self._wait(client.create_async(self.paths.history, b"", acl=shared))

    def trim_history(self, path: str, keep: int = HISTORY_LENGTH) -> None:
        """Delete the entries older than the last ``keep`` without waiting (fire and forget:
        a delete that is lost is retried by the next leadership's trim)."""
        newest = history_seq(path.rsplit("/", 1)[1])
        if newest is None or newest < keep:
            return  # sequence numbers only grow: fewer than ``keep`` entries ever existed
        client = self.client

        def on_children(result: Any) -> None:
            try:
                children: list[str] = result.get()
            except Exception:  # best effort: the next trim retries
                return
            entries = sorted(c for c in children if history_seq(c) is not None)
            for child in entries[:-keep]:
                client.delete_async(self.paths.history_entry(child))

        client.get_children_async(self.paths.history).rawlink(on_children)

    def release(
        self, leader_version: int, my_node: str | None, switchover: SwitchoverRequest | None
    ) -> bool:
        """Hand over: /leader and our election node (and an honoured request) at once."""
        txn = self.client.transaction()
        txn.delete(self.paths.leader, version=leader_version)
        if my_node is not None:
            txn.delete(self.paths.candidate(my_node))
        if switchover is not None:
            txn.delete(self.paths.switchover, version=switchover.version)
        return self._commit(txn)

    def clear_dead(self, dead: LeaderInfo, version: int) -> bool:
        txn = self.client.transaction()
        self._add_pause_guard(txn)
        self._add_clear(txn, dead, version)
        return self._commit(txn)

    def _add_clear(self, txn: Any, dead: LeaderInfo, version: int) -> None:
        txn.delete(self.paths.leader, version=version)
        # The dead leader's own election node (named in /leader): if its session already
        # ended, this delete fails and so does the whole transaction.
        if dead.node is not None:
            txn.delete(self.paths.candidate(dead.node))

    def delete_forged_leader(self, version: int) -> bool:
        """Remove a persistent /leader (no session owns it) if nothing rewrote it since."""
        try:
            self._wait(self.client.delete_async(self.paths.leader, version=version))
        except (NoNodeError, KazooException):
            return False
        return True

    def requeue(self, my_node: str, prefix: str, leader_version: int) -> str | None:
        """Move our election node to the back of the line in one transaction, only while
        the /leader we saw (``leader_version``) still holds: never while the lease is free.
        Our new node's name, or None (nothing done)."""
        txn = self.client.transaction()
        txn.check(self.paths.leader, leader_version)
        txn.delete(self.paths.candidate(my_node))
        txn.create(self.paths.candidate(prefix), b"", acl=self.acl, ephemeral=True, sequence=True)
        results = self._commit_results(txn)
        if results is None:
            return None
        path: str = results[-1]
        return path.rsplit("/", 1)[1]

    def leave(self, my_node: str) -> bool:
        """Delete our election node (we keep our member node and session)."""
        try:
            self._wait(self.client.delete_async(self.paths.candidate(my_node)))
        except NoNodeError:
            return True
        except KazooException:
            return False
        return True

    def members(self) -> tuple[MemberInfo, ...]:
        """Every member node, read in one pipelined round trip after the listing."""
        client = self.client
        names = sorted(self._wait(client.get_children_async(self.paths.members)))
        pending = [(name, client.get_async(self.paths.member(name))) for name in names]
        found: list[MemberInfo] = []
        for name, result in pending:
            with contextlib.suppress(NoNodeError):
                raw, _ = self._wait(result)
                found.append(MemberInfo.parse(name, raw))
        return tuple(found)

    def delete_leader(self, version: int) -> None:
        with contextlib.suppress(NoNodeError, KazooException):
            self.client.delete(self.paths.leader, version=version)

    def drop_switchover(self, request: SwitchoverRequest) -> None:
        with contextlib.suppress(NoNodeError, KazooException):
            self.client.delete(self.paths.switchover, version=request.version)

    def delete_own(self, name: str, my_node: str | None, *, leader: bool, member: bool) -> None:
        """Best-effort cleanup at stop (closing the session removes the rest)."""
        client = self.client
        session_id = client.client_id[0] if client.client_id else None
        if leader:
            with contextlib.suppress(NoNodeError):
                stat = self._wait(client.exists_async(self.paths.leader))
                if stat is not None and stat.ephemeralOwner == session_id:
                    self._wait(client.delete_async(self.paths.leader, version=stat.version))
        if my_node is not None:
            with contextlib.suppress(NoNodeError):
                self._wait(client.delete_async(self.paths.candidate(my_node)))
        if member:
            with contextlib.suppress(NoNodeError):
                self._wait(client.delete_async(self.paths.member(name)))
