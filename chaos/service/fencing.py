"""The connector gate: every connector call passes here before it may change anything.

    gate = Gate(store)
    batch = gate.fenced("requests/poll", name, epoch, lambda tx: take(tx))  # or raises ApiError
    gate.register(name, epoch)

Refusals, in order: 403 for a connector an admin revoked; 409 for an epoch
below the highest registered, or the highest epoch from another name (recorded
in ``stale_rejections``, counted, nothing else changes); 428 for an epoch never
registered. The rules themselves are the pure functions in :mod:`rules`.

The highest epoch seen lives in the ``fence`` row and only ever grows (a
trigger refuses anything else): a register moves it with ``MAX(old, new)`` in
the transaction that accepts it, and no other call lowers it. A register is
refused as a suspected forgery (event ``5113 epoch_forgery_refused`` naming the
connector, a row in ``events``, the counter
``pfxha_service_forged_epoch_refusals_total``) when its epoch is above
:data:`rules.MAX_EPOCH` (422), or jumps further above the highest seen than
the advance budget allows (429 with Retry-After while waiting can help, else
403) and no admin accepted that epoch for that connector.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.rules import (
    AdvanceVerdict,
    FenceVerdict,
    advance_verdict,
    epoch_problem,
    fence,
    register_verdict,
)
from chaos.service.store import ApiError, Store

__all__ = ["Gate"]

T = TypeVar("T")


class Gate:
    def __init__(self, store: Store) -> None:
        self.store = store

    def highest(self, tx: sqlite3.Connection) -> tuple[int, str | None]:
        """The highest epoch ever registered and the connector that holds it."""
        return self.store.db.fence(tx)

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
                    _raise_highest(tx, epoch)
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
        refusal: Callable[[], ApiError] | None = None
        with self.store.db.transaction() as tx:
            current, holder = self.highest(tx)
            why = self.revoked(tx, name)
            problem = epoch_problem(epoch)
            verdict = register_verdict(epoch, name, current, holder)
            if why is not None:
                refusal = partial(self._revoked_refusal, "register", name, why)
            elif problem is not None:
                self._record_forgery(tx, name, epoch, current, "bound", problem)
                refusal = partial(
                    self._forgery_refusal, name, epoch, current, "bound", problem, 422
                )
            elif not verdict.ok:
                self._record_stale(tx, "register", name, epoch, current, verdict)
                refusal = partial(self._fence_refusal, "register", name, epoch, current, verdict)
            else:
                advance = self._advance(tx, name, epoch, current)
                if advance.ok:
                    _raise_highest(tx, epoch, holder=name)
                    self.touch(tx, name, epoch=epoch)
                    self.store.event(tx, "register", name, epoch=epoch)
                else:
                    reason = advance.reason.replace("{name}", name)
                    self._record_forgery(tx, name, epoch, current, "jump", reason)
                    refusal = partial(
                        self._forgery_refusal,
                        name,
                        epoch,
                        current,
                        "jump",
                        reason,
                        403 if advance.retry_after_s is None else 429,
                        advance.retry_after_s,
                    )
        if refusal is not None:
            raise refusal()
        emit(log, LogEvent.CONNECTOR_REGISTERED, name=name, epoch=epoch, previous=current)
        self.store.wake()  # long polls of a deposed epoch must notice now
        return current

    def _advance(
        self, tx: sqlite3.Connection, name: str, epoch: int, current: int
    ) -> AdvanceVerdict:
        """Spend the advance budget on ``current -> epoch`` (or an admin's acceptance)."""
        row = tx.execute("SELECT budget, budget_at FROM fence WHERE id = 1").fetchone()
        accepted = (
            tx.execute(
                "SELECT 1 FROM epoch_acceptances WHERE name = ? AND epoch = ? AND used_at IS NULL",
                (name, epoch),
            ).fetchone()
            is not None
        )
        now = self.store.clock()
        verdict = advance_verdict(
            epoch,
            current,
            budget=float(row["budget"]),
            budget_at=float(row["budget_at"]),
            now=now,
            policy=self.store.settings.advance,
            admin_accepted=accepted,
        )
        if verdict.ok:
            tx.execute(
                "UPDATE fence SET budget = ?, budget_at = ? WHERE id = 1", (verdict.budget, now)
            )
            if accepted:
                tx.execute(
                    "UPDATE epoch_acceptances SET used_at = ? WHERE name = ? AND epoch = ?",
                    (self.store.now_iso(), name, epoch),
                )
        return verdict

    def revoke(self, name: str, reason: str) -> sqlite3.Row:
        """Refuse every later call of ``name`` (403). The highest epoch does not move."""
        with self.store.db.transaction() as tx:
            known = tx.execute(
                "SELECT 1 FROM connectors WHERE name = ? UNION ALL "
                "SELECT 1 FROM connector_certificates WHERE name = ?",
                (name, name),
            ).fetchone()
            if known is None:
                raise ApiError(404, f"unknown connector {name!r}")
            tx.execute(
                "INSERT INTO revoked_connectors(name, at, reason) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO NOTHING",
                (name, self.store.now_iso(), reason),
            )
            row: sqlite3.Row = tx.execute(
                "SELECT * FROM revoked_connectors WHERE name = ?", (name,)
            ).fetchone()
            highest, _ = self.highest(tx)
        emit(log, LogEvent.CONNECTOR_REVOKED, name=name, highest_epoch=highest)
        self.store.wake()  # its long polls must end now
        return row

    def accept_epoch(self, name: str, epoch: int, reason: str) -> int:
        """Let ``name`` register exactly ``epoch`` once beyond the advance budget; returns
        the highest epoch now (unchanged: an acceptance moves nothing by itself)."""
        problem = epoch_problem(epoch)
        if problem is not None:
            raise ApiError(422, problem)
        with self.store.db.transaction() as tx:
            if self.revoked(tx, name) is not None:
                raise ApiError(409, f"connector {name!r} is revoked")
            highest, _ = self.highest(tx)
            if epoch <= highest:
                raise ApiError(
                    409,
                    f"epoch {epoch} is not above the highest seen {highest}",
                    highest_epoch=highest,
                )
            tx.execute(
                "INSERT INTO epoch_acceptances(name, epoch, at, reason) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name, epoch) DO UPDATE SET at = excluded.at, "
                "reason = excluded.reason, used_at = NULL",
                (name, epoch, self.store.now_iso(), reason),
            )
            self.store.event(tx, "epoch_accepted", name, epoch=epoch, reason=reason)
        emit(log, LogEvent.EPOCH_ACCEPTED_BY_ADMIN, name=name, epoch=epoch, highest=highest)
        return highest

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

    def _record_forgery(
        self, tx: sqlite3.Connection, name: str, epoch: int, current: int, kind: str, reason: str
    ) -> None:
        # The epoch as text: one above the bound may not even fit SQLite's integer.
        self.store.event(
            tx,
            "epoch_forgery_refused",
            name,
            epoch=str(epoch)[:40],
            highest_epoch=current,
            refused=kind,
            reason=reason[:300],
        )

    def _forgery_refusal(
        self,
        name: str,
        epoch: int,
        current: int,
        kind: str,
        reason: str,
        status: int,
        retry_after_s: float | None = None,
    ) -> ApiError:
        self.store.on_forged(kind)
        emit(
            log,
            LogEvent.EPOCH_FORGERY_REFUSED,
            name=name,
            epoch=str(epoch)[:40],
            highest=current,
            kind=kind,
        )
        extra: dict[str, object] = {"highest_epoch": current, "forgery_suspected": True}
        if retry_after_s is not None:
            extra["retry_after_s"] = round(retry_after_s, 3)
        return ApiError(status, reason, **extra)

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
        return ApiError(
            403, f"connector {name!r} was revoked by an admin: {reason}", connector_revoked=True
        )


def _raise_highest(tx: sqlite3.Connection, epoch: int, *, holder: str | None = None) -> None:
    """``highest = MAX(highest, epoch)``: the only write the highest epoch ever gets."""
    if holder is None:
        tx.execute("UPDATE fence SET highest_epoch = MAX(highest_epoch, ?) WHERE id = 1", (epoch,))
    else:
        tx.execute(
            "UPDATE fence SET highest_epoch = MAX(highest_epoch, ?), holder = ? WHERE id = 1",
            (epoch, holder),
        )
