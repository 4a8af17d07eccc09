"""The connector gate: every connector call passes here before it may change anything.

    gate = Gate(store)
    batch = gate.fenced("requests/poll", name, epoch, lambda tx: take(tx))  # or raises ApiError
    gate.register(name, epoch)

Refusals, in order: 403 for a connector an admin revoked; 409 for an epoch
below the highest registered, or the highest epoch from another name (recorded
in ``stale_rejections``, counted, nothing else changes); 428 for an epoch never
registered. The rules themselves are the pure functions in :mod:`rules`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.rules import FenceVerdict, fence, register_verdict
from chaos.service.store import ApiError, Store

__all__ = ["Gate"]

T = TypeVar("T")


class Gate:
    def __init__(self, store: Store) -> None:
        self.store = store

    def highest(self, tx: sqlite3.Connection) -> tuple[int, str | None]:
        """The highest epoch ever registered and the connector that holds it."""
        epoch = int(self.store.db.meta_get(tx, "highest_epoch", "0"))
        holder = self.store.db.meta_get(tx, "holder", "") or None
        return epoch, holder

    def touch(self, tx: sqlite3.Connection, name: str, epoch: int | None = None) -> None:
        """Mark ``name`` as seen now (and as registered at ``epoch``)."""
        store = self.store
        tx.execute(
            "INSERT INTO connectors(name, epoch, health, details, last_seen, last_seen_at) "
            "VALUES (?, 0, 'healthy', '{}', ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "last_seen = excluded.last_seen, last_seen_at = excluded.last_seen_at",
            (name, store.clock(), store.now_iso()),
        )
        if epoch is not None:
            tx.execute(
                "UPDATE connectors SET epoch = ?, registered_at = ? WHERE name = ?",
                (epoch, store.now_iso(), name),
            )

    @staticmethod
    def revoked(tx: sqlite3.Connection, name: str) -> str | None:
        """Why an admin revoked ``name``, or None."""
        row = tx.execute("SELECT reason FROM revoked_connectors WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row["reason"])

    def fenced(
        self, endpoint: str, name: str, epoch: int, action: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Run ``action`` in one transaction if ``(name, epoch)`` holds the highest epoch."""
        with self.store.db.transaction() as tx:
            why = self.revoked(tx, name)
            if why is None:
                current, holder = self.highest(tx)
                verdict = fence(epoch, name, current, holder)
                if verdict.ok:
                    self.touch(tx, name)
                    return action(tx)
                if verdict.stale:
                    self._record_stale(tx, endpoint, name, epoch, current, verdict)
        if why is not None:
            raise self._revoked_refusal(endpoint, name, why)
        raise self._fence_refusal(endpoint, name, epoch, current, verdict)

    def precheck(self, endpoint: str, name: str, epoch: int) -> None:
        """Refuse now what :meth:`fenced` would refuse, changing nothing on success: for
        calls that must not make the service do expensive work for a refused caller."""
        with self.store.db.transaction() as tx:
            why = self.revoked(tx, name)
            if why is None:
                current, holder = self.highest(tx)
                verdict = fence(epoch, name, current, holder)
                if verdict.ok:
                    return
                if verdict.stale:
                    self._record_stale(tx, endpoint, name, epoch, current, verdict)
        if why is not None:
            raise self._revoked_refusal(endpoint, name, why)
        raise self._fence_refusal(endpoint, name, epoch, current, verdict)

    def register(self, name: str, epoch: int) -> int:
        """Make ``(name, epoch)`` the holder; returns the previous highest epoch."""
        with self.store.db.transaction() as tx:
            why = self.revoked(tx, name)
            if why is None:
                current, holder = self.highest(tx)
                verdict = register_verdict(epoch, name, current, holder)
                if verdict.ok:
                    self.store.db.meta_set(tx, "highest_epoch", str(epoch))
                    self.store.db.meta_set(tx, "holder", name)
                    self.touch(tx, name, epoch=epoch)
                    self.store.event(tx, "register", name, epoch=epoch)
                else:
                    self._record_stale(tx, "register", name, epoch, current, verdict)
        if why is not None:
            raise self._revoked_refusal("register", name, why)
        if not verdict.ok:
            raise self._fence_refusal("register", name, epoch, current, verdict)
        emit(log, LogEvent.CONNECTOR_REGISTERED, name=name, epoch=epoch, previous=current)
        self.store.wake()  # long polls of a deposed epoch must notice now
        return current

    def check_not_revoked(self, tx: sqlite3.Connection, endpoint: str, name: str) -> None:
        """For calls that are not fenced (a standby's heartbeat)."""
        why = self.revoked(tx, name)
        if why is not None:
            raise self._revoked_refusal(endpoint, name, why)

    # -- refusals ----------------------------------------------------------------

    def _record_stale(
        self,
        tx: sqlite3.Connection,
        endpoint: str,
        name: str,
        epoch: int,
        current: int,
        verdict: FenceVerdict,
    ) -> None:
        tx.execute(
            "INSERT INTO stale_rejections(at, name, epoch, highest_epoch, endpoint, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self.store.now_iso(), name, epoch, current, endpoint, verdict.reason),
        )

    def _fence_refusal(
        self, endpoint: str, name: str, epoch: int, current: int, verdict: FenceVerdict
    ) -> ApiError:
        if verdict.stale:
            self.store.on_stale(endpoint)
            emit(log, LogEvent.STALE_EPOCH_REFUSED, endpoint=endpoint, name=name, epoch=epoch)
            return ApiError(409, verdict.reason, highest_epoch=current)
        emit(log, LogEvent.NOT_REGISTERED_REFUSED, endpoint=endpoint, name=name, epoch=epoch)
        return ApiError(428, verdict.reason, highest_epoch=current)

    def _revoked_refusal(self, endpoint: str, name: str, reason: str) -> ApiError:
        self.store.on_revoked(endpoint)
        emit(log, LogEvent.REVOKED_CONNECTOR_REFUSED, endpoint=endpoint, name=name)
        return ApiError(403, f"connector {name!r} was revoked by an admin: {reason}")
