"""Device API (/api/v1/devices/{id}): check in, receive PFX, report status (seed steps 6-7).

Check-in hands out every issued certificate not yet installed, re-sealed to
the device's management certificate (state -> delivered; a lost answer is
simply delivered again), and every certificate the device must delete.

User-scoped certificates (:mod:`chaos.service.user_certs`) are re-sealed here
too, from the one escrowed KRA envelope, once per device: the service is the
only holder of the KRA key, so the connector (and the CA) never see a device.
"""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import dataclass

from cryptography import x509
from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.rules import Event, Mode, revocation_outcome
from chaos.service.store import ApiError, Store
from chaos.service.user_certs import (
    CopyReportError,
    copy_deletions,
    deliverable_copies,
    ensure_copies,
    mark_delivered,
    report_copy,
)
from connector.pki.envelope import EnvelopeError

__all__ = ["device_router"]


def device_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 401, 403, 404, 409, 413),
        prefix="/api/v1/devices",
        tags=["device"],
        dependencies=[Depends(auth.device)],
    )

    @router.post("/{device_id}/checkin", response_model=m.CheckinOut)
    def checkin(device_id: m.Id) -> m.CheckinOut:
        # Re-sealing is RSA work: done between two short transactions, not
        # while holding the write lock the connector's uploads also need.
        with store.db.transaction() as tx:
            device = store.row(tx, "devices", device_id)
            ensure_copies(store, tx, device_id)
            candidates = deliverable(tx, device_id) if device["state"] == "active" else []
            copies = [_Copy.of(r) for r in deliverable_copies(tx, device_id)]
        sealed = reseal(device, candidates) + reseal_copies(device, copies)
        with store.db.transaction() as tx:
            device = store.row(tx, "devices", device_id)
            still = set(deliverable(tx, device_id)) if device["state"] == "active" else set()
            # A copy whose usage changed meanwhile (a rollover) waits for the next check-in.
            unchanged = {_Copy.of(r) for r in deliverable_copies(tx, device_id)} & set(copies)
            still |= {c.id for c in unchanged}
            deliveries = [d for d in sealed if d.request_id in still]
            now = store.now_iso()
            for delivery in deliveries:
                if delivery.scope == "device":
                    tx.execute(
                        "UPDATE requests SET state = 'delivered', "
                        "delivered_at = COALESCE(delivered_at, ?), updated_at = ? WHERE id = ?",
                        (now, now, delivery.request_id),
                    )
            mark_delivered(store, tx, [d.request_id for d in deliveries if d.scope == "user"])
            deletions = [
                m.Deletion(request_id=r["id"], profile_id=r["profile_id"], serial=r["serial"])
                for r in tx.execute(
                    "SELECT * FROM requests WHERE device_id = ? AND device_delete = 'pending' "
                    "AND scope = 'device' ORDER BY seq",
                    (device_id,),
                )
            ] + [
                m.Deletion(
                    request_id=r["id"], profile_id=r["profile_id"], serial=r["serial"], scope="user"
                )
                for r in copy_deletions(tx, device_id)
            ]
        for delivery in deliveries:
            emit(log, LogEvent.DELIVERED, device=device_id, request=delivery.request_id)
        return m.CheckinOut(
            device_id=device_id, state=device["state"], deliveries=deliveries, deletions=deletions
        )

    def deliverable(tx: sqlite3.Connection, device_id: str) -> list[str]:
        """Issued, not yet installed, neither cancelled nor revoked: the device gets these."""
        rows = tx.execute(
            "SELECT id FROM requests WHERE device_id = ? AND state IN ('issued', 'delivered') "
            "AND cancelled IS NULL AND revocation IS NULL AND scope = 'device' ORDER BY seq",
            (device_id,),
        )
        return [r["id"] for r in rows]

    def reseal(device: sqlite3.Row, request_ids: list[str]) -> list[m.Delivery]:
        if not request_ids:
            return []
        return [
            sealed_delivery(device, request_id, request_id, "device", "current")
            for request_id in request_ids
        ]

    def reseal_copies(device: sqlite3.Row, copies: list[_Copy]) -> list[m.Delivery]:
        return [sealed_delivery(device, c.id, c.request_id, "user", c.usage) for c in copies]

    def sealed_delivery(
        device: sqlite3.Row,
        delivery_id: str,
        request_id: str,
        scope: m.ScopeName,
        usage: m.Usage,
    ) -> m.Delivery:
        device_cert = x509.load_pem_x509_certificate(device["certificate_pem"].encode())
        (row,) = store.db.query(
            "SELECT id, profile_id, serial, envelope FROM requests WHERE id = ?", (request_id,)
        )
        try:
            blob = store.keys.reseal_for_device(row["envelope"], device_cert)
        except EnvelopeError as exc:  # checked at upload; only a changed KRA gets here
            raise ApiError(409, f"request {request_id}: stored envelope unusable: {exc}") from exc
        return m.Delivery(
            request_id=delivery_id,
            profile_id=row["profile_id"],
            serial=row["serial"],
            envelope_b64=base64.b64encode(blob).decode("ascii"),
            scope=scope,
            usage=usage,
        )

    @router.post("/{device_id}/report", response_model=m.Ack)
    def report(device_id: m.Id, body: m.ReportIn) -> m.Ack:
        with store.db.transaction() as tx:
            store.row(tx, "devices", device_id)
            copy = tx.execute(
                "SELECT * FROM user_copies WHERE id = ? AND device_id = ?",
                (body.request_id, device_id),
            ).fetchone()
            if copy is not None:
                try:
                    state = report_copy(store, tx, copy, body.status, body.reason)
                except CopyReportError as exc:
                    raise ApiError(400, str(exc)) from exc
            else:
                req = store.row(tx, "requests", body.request_id)
                if req["device_id"] != device_id or req["scope"] != "device":
                    raise ApiError(
                        404, f"unknown request {body.request_id!r} for device {device_id!r}"
                    )
                state = report_status(tx, req, body)
        event = {
            "installed": LogEvent.INSTALLED,
            "failed": LogEvent.DEVICE_FAILED,
            "deleted": LogEvent.DEVICE_DELETED,
        }[body.status]
        emit(log, event, device=device_id, request=body.request_id, state=state)
        store.wake()
        return m.Ack(id=body.request_id, state=state)

    def report_status(tx: sqlite3.Connection, req: sqlite3.Row, body: m.ReportIn) -> str:
        now = store.now_iso()
        if body.status == "deleted":
            if req["device_delete"] not in ("pending", "done"):
                raise ApiError(400, f"request {req['id']} was not to be deleted")
            tx.execute(
                "UPDATE requests SET device_delete = 'done', "
                "device_deleted_at = COALESCE(device_deleted_at, ?) WHERE id = ?",
                (now, req["id"]),
            )
            return str(req["state"])
        if req["state"] == body.status:
            return str(req["state"])  # a repeated report
        if req["state"] != "delivered":
            raise ApiError(400, f"request {req['id']} is {req['state']}, not delivered")
        if body.status == "failed":
            tx.execute(
                "UPDATE requests SET state = 'failed', reason = ?, updated_at = ? WHERE id = ?",
                (f"device: {body.reason or 'install failed'}", now, req["id"]),
            )
            # Issued but never in use: revoke it so no unused certificate stays valid.
            store.queue_revocation(tx, req, Event.RENEWAL, "superseded")
            return "failed"
        tx.execute(
            "UPDATE requests SET state = 'installed', installed_at = ?, updated_at = ? "
            "WHERE id = ?",
            (now, now, req["id"]),
        )
        if req["replaces"] is not None:
            old = tx.execute(
                "SELECT * FROM requests WHERE id = ? AND cancelled IS NULL AND revocation IS NULL",
                (req["replaces"],),
            ).fetchall()
            outcome = revocation_outcome(Event.RENEWAL, Mode.HYBRID)
            assert outcome is not None
            store.retire_requests(tx, old, Event.RENEWAL, outcome)
        return "installed"

    return router


@dataclass(frozen=True)
class _Copy:
    """One device's copy of a user-scoped certificate, as delivered."""

    id: str
    request_id: str
    usage: m.Usage

    @classmethod
    def of(cls, row: sqlite3.Row) -> _Copy:
        usage: m.Usage = "decrypt-only" if row["usage"] == "decrypt-only" else "current"
        return cls(row["id"], row["request_id"], usage)
