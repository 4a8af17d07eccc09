"""Device API (/api/v1/devices/{id}): check in, receive PFX, report status (seed steps 6-7).

Check-in hands out every issued certificate not yet installed, re-sealed to
the device's management certificate (state -> delivered; a lost answer is
simply delivered again), and every certificate the device must delete.
"""

from __future__ import annotations

import base64
import sqlite3

from cryptography import x509
from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.rules import Event, Mode, revocation_outcome
from chaos.service.store import ApiError, Store
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
            candidates = deliverable(tx, device_id) if device["state"] == "active" else []
        sealed = reseal(device, candidates)
        with store.db.transaction() as tx:
            device = store.row(tx, "devices", device_id)
            still = set(deliverable(tx, device_id)) if device["state"] == "active" else set()
            deliveries = [d for d in sealed if d.request_id in still]
            now = store.now_iso()
            for delivery in deliveries:
                tx.execute(
                    "UPDATE requests SET state = 'delivered', "
                    "delivered_at = COALESCE(delivered_at, ?), updated_at = ? WHERE id = ?",
                    (now, now, delivery.request_id),
                )
            deletions = [
                m.Deletion(request_id=r["id"], profile_id=r["profile_id"], serial=r["serial"])
                for r in tx.execute(
                    "SELECT * FROM requests WHERE device_id = ? AND device_delete = 'pending' "
                    "ORDER BY seq",
                    (device_id,),
                )
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
            "AND cancelled IS NULL AND revocation IS NULL ORDER BY seq",
            (device_id,),
        )
        return [r["id"] for r in rows]

    def reseal(device: sqlite3.Row, request_ids: list[str]) -> list[m.Delivery]:
        if not request_ids:
            return []
        device_cert = x509.load_pem_x509_certificate(device["certificate_pem"].encode())
        out = []
        for request_id in request_ids:
            (row,) = store.db.query(
                "SELECT id, profile_id, serial, envelope FROM requests WHERE id = ?", (request_id,)
            )
            try:
                blob = store.keys.reseal_for_device(row["envelope"], device_cert)
            except EnvelopeError as exc:  # checked at upload; only a changed KRA gets here
                raise ApiError(
                    409, f"request {request_id}: stored envelope unusable: {exc}"
                ) from exc
            out.append(
                m.Delivery(
                    request_id=request_id,
                    profile_id=row["profile_id"],
                    serial=row["serial"],
                    envelope_b64=base64.b64encode(blob).decode("ascii"),
                )
            )
        return out

    @router.post("/{device_id}/report", response_model=m.Ack)
    def report(device_id: m.Id, body: m.ReportIn) -> m.Ack:
        with store.db.transaction() as tx:
            store.row(tx, "devices", device_id)
            req = store.row(tx, "requests", body.request_id)
            if req["device_id"] != device_id:
                raise ApiError(404, f"unknown request {body.request_id!r} for device {device_id!r}")
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
