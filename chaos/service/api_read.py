"""Read API (/api/v1/read) for tools, checkers and dashboards; it changes nothing."""

from __future__ import annotations

import json
import sqlite3

from fastapi import APIRouter, Depends, Query

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.metrics import GaugeSnapshot
from chaos.service.scope import Scope, revocation_table
from chaos.service.store import STOOD_DOWN_EPOCH, Store

__all__ = ["connector_list", "gauge_snapshot", "read_router"]

_MAX_ROWS = 100_000


def connector_list(store: Store, tx: sqlite3.Connection) -> list[m.ConnectorOut]:
    """Every connector; the holder of the highest epoch is "active" while it is live."""
    highest, holder = store.db.fence(tx)
    if store.db.meta_get(tx, STOOD_DOWN_EPOCH, "") == str(highest):
        holder = None  # it heartbeated as a standby since it registered
    revoked = {r["name"] for r in tx.execute("SELECT name FROM revoked_connectors")}
    now = store.clock()
    out = []
    for row in tx.execute("SELECT * FROM connectors ORDER BY name"):
        live = now - row["last_seen"] <= store.settings.connector_stale_after_s
        live = live and row["name"] not in revoked
        out.append(
            m.ConnectorOut(
                name=row["name"],
                epoch=row["epoch"],
                role="active" if live and row["name"] == holder else "standby",
                health=row["health"] if live else "unknown",
                last_seen=row["last_seen_at"],
                details=json.loads(row["details"]),
                revoked=row["name"] in revoked,
            )
        )
    return out


def gauge_snapshot(store: Store) -> GaugeSnapshot:
    with store.db.transaction() as tx:
        requests = {
            r["state"]: r["n"]
            for r in tx.execute("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
        }
        revocations = {
            r["state"]: r["n"]
            for r in tx.execute("SELECT state, COUNT(*) AS n FROM revocations GROUP BY state")
        }
        connectors = connector_list(store, tx)
        highest, _ = store.db.fence(tx)
    health: dict[str, int] = {}
    for c in connectors:
        health[c.health] = health.get(c.health, 0) + 1
    active = next((c.name for c in connectors if c.role == "active"), None)
    return GaugeSnapshot(requests, revocations, highest, active, health)


def read_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(401),
        prefix="/api/v1/read",
        tags=["read"],
        dependencies=[Depends(auth.admin)],
    )

    @router.get("/certificates", response_model=list[m.CertificateOut])
    def certificates(
        device_id: m.Id | None = None, profile_id: m.Id | None = None
    ) -> list[m.CertificateOut]:
        """Certificates that reached a device (delivered or installed), with their fate."""
        # Columns renamed to the answer's field names, so the row maps as is.
        sql = (
            "SELECT id AS request_id, serial, ca_name AS issuer_ca, device_id, profile_id, "
            "epoch, state, revocation, not_after FROM requests "
            "WHERE serial IS NOT NULL AND delivered_at IS NOT NULL "
            "AND (? IS NULL OR device_id = ?) AND (? IS NULL OR profile_id = ?) ORDER BY seq"
        )
        rows = store.db.query(sql, (device_id, device_id, profile_id, profile_id))
        return [m.CertificateOut.from_row(r) for r in rows]

    @router.get("/requests", response_model=list[m.RequestOut])
    def requests(
        state: m.RequestState | None = None,
        device_id: m.Id | None = None,
        serial: str | None = Query(default=None, max_length=100),
        limit: int = Query(default=10_000, ge=1, le=_MAX_ROWS),
    ) -> list[m.RequestOut]:
        """Every request (all states) with its certificate, revocation and timestamps.

        ``serial``: the request whose certificate has that serial (``connector`` and
        ``epoch`` say who uploaded it under which leadership: ``pfxha history --serial``).
        """
        rows = store.db.query(
            "SELECT * FROM requests WHERE (? IS NULL OR state = ?) "
            "AND (? IS NULL OR device_id = ?) AND (? IS NULL OR serial = ?) ORDER BY seq LIMIT ?",
            (state, state, device_id, device_id, serial, serial, limit),
        )
        return [m.RequestOut.from_row(r) for r in rows]

    @router.get("/user-copies", response_model=list[m.UserCopyOut])
    def user_copies(
        device_id: m.Id | None = None,
        user_id: m.Id | None = None,
        limit: int = Query(default=10_000, ge=1, le=_MAX_ROWS),
    ) -> list[m.UserCopyOut]:
        """Each device's copy of each user-scoped certificate (current or decrypt-only)."""
        rows = store.db.query(
            "SELECT * FROM user_copies WHERE (? IS NULL OR device_id = ?) "
            "AND (? IS NULL OR user_id = ?) ORDER BY seq LIMIT ?",
            (device_id, device_id, user_id, user_id, limit),
        )
        return [m.UserCopyOut.from_row(r) for r in rows]

    @router.get("/revocation-table", response_model=list[m.TableRowOut])
    def table(scope: m.ScopeName = "device") -> list[m.TableRowOut]:
        """What each admin action does to a certificate of a profile of this scope."""
        return [
            m.TableRowOut(
                event=r.event,
                scope=r.scope,
                standalone=r.standalone,
                hybrid=r.hybrid,
                crl_reason=r.crl_reason,
            )
            for r in revocation_table(Scope(scope))
        ]

    @router.get("/revocations", response_model=list[m.RevocationOut])
    def revocations(
        state: m.RevocationState | None = None,
        serial: str | None = Query(default=None, max_length=100),
        limit: int = Query(default=10_000, ge=1, le=_MAX_ROWS),
    ) -> list[m.RevocationOut]:
        rows = store.db.query(
            "SELECT * FROM revocations WHERE (? IS NULL OR state = ?) "
            "AND (? IS NULL OR serial = ?) ORDER BY seq LIMIT ?",
            (state, state, serial, serial, limit),
        )
        return [m.RevocationOut.from_row(r) for r in rows]

    @router.get("/connectors", response_model=list[m.ConnectorOut])
    def connectors() -> list[m.ConnectorOut]:
        with store.db.transaction() as tx:
            return connector_list(store, tx)

    @router.get("/events", response_model=list[m.AuditEventOut])
    def events(
        kind: m.Id | None = None,
        subject: m.Id | None = None,
        limit: int = Query(default=10_000, ge=1, le=_MAX_ROWS),
    ) -> list[m.AuditEventOut]:
        """The audit trail: admin actions, key recoveries, renewals finished, ..."""
        rows = store.db.query(
            "SELECT * FROM events WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR subject = ?) "
            "ORDER BY id LIMIT ?",
            (kind, kind, subject, subject, limit),
        )
        return [
            m.AuditEventOut(
                id=r["id"],
                at=r["at"],
                kind=r["kind"],
                subject=r["subject"],
                detail=json.loads(r["detail"]),
            )
            for r in rows
        ]

    @router.get("/stale-rejections", response_model=list[m.RejectionOut])
    def stale_rejections(
        limit: int = Query(default=10_000, ge=1, le=_MAX_ROWS),
    ) -> list[m.RejectionOut]:
        rows = store.db.query("SELECT * FROM stale_rejections ORDER BY id LIMIT ?", (limit,))
        return [
            m.RejectionOut(
                id=r["id"],
                at=r["at"],
                name=r["name"],
                epoch=r["epoch"],
                highest_epoch=r["highest_epoch"],
                endpoint=r["endpoint"],
                reason=r["reason"],
            )
            for r in rows
        ]

    return router
