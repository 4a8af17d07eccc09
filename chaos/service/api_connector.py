"""Connector API (/api/v1/connector): registration, fencing, work queues, results.

Every call carries ``(name, epoch)``. An epoch lower than the highest ever
registered is refused with 409, recorded in ``stale_rejections`` and counted,
and changes nothing else. Only the connector that registered the highest
epoch may poll, record intents, upload, fail and confirm.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.keys import certificate_fingerprint, public_key_fingerprint
from chaos.service.rules import Event, Mode, fence, register_verdict, revocation_outcome
from chaos.service.store import ApiError, Store
from connector.pki.envelope import EnvelopeError

__all__ = ["connector_router"]

T = TypeVar("T")


def connector_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 403, 404, 409, 413, 428),
        prefix="/api/v1/connector",
        tags=["connector"],
        dependencies=[Depends(auth.connector)],
    )

    def highest(tx: sqlite3.Connection) -> tuple[int, str | None]:
        epoch = int(store.db.meta_get(tx, "highest_epoch", "0"))
        holder = store.db.meta_get(tx, "holder", "") or None
        return epoch, holder

    def touch(tx: sqlite3.Connection, name: str, epoch: int | None = None) -> None:
        now = store.clock()
        tx.execute(
            "INSERT INTO connectors(name, epoch, health, details, last_seen, last_seen_at) "
            "VALUES (?, 0, 'healthy', '{}', ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "last_seen = excluded.last_seen, last_seen_at = excluded.last_seen_at",
            (name, now, store.now_iso()),
        )
        if epoch is not None:
            tx.execute(
                "UPDATE connectors SET epoch = ?, registered_at = ? WHERE name = ?",
                (epoch, store.now_iso(), name),
            )

    def refuse(tx: sqlite3.Connection, endpoint: str, name: str, epoch: int, reason: str) -> None:
        current, _ = highest(tx)
        tx.execute(
            "INSERT INTO stale_rejections(at, name, epoch, highest_epoch, endpoint, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (store.now_iso(), name, epoch, current, endpoint, reason),
        )

    def revoked(tx: sqlite3.Connection, name: str) -> str | None:
        row = tx.execute("SELECT reason FROM revoked_connectors WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row["reason"])

    def refuse_revoked(endpoint: str, name: str, reason: str) -> ApiError:
        store.on_revoked(endpoint)
        emit(log, LogEvent.REVOKED_CONNECTOR_REFUSED, endpoint=endpoint, name=name)
        return ApiError(403, f"connector {name!r} was revoked by an admin: {reason}")

    def fenced(
        endpoint: str, name: str, epoch: int, action: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Run ``action`` in one transaction if (name, epoch) holds the highest epoch."""
        refusal: ApiError | None = None
        with store.db.transaction() as tx:
            why = revoked(tx, name)
            if why is not None:
                refusal = refuse_revoked(endpoint, name, why)
        if refusal is not None:
            raise refusal
        with store.db.transaction() as tx:
            current, holder = highest(tx)
            verdict = fence(epoch, name, current, holder)
            if verdict.ok:
                touch(tx, name)
                return action(tx)
            if verdict.stale:
                refuse(tx, endpoint, name, epoch, verdict.reason)
                refusal = ApiError(409, verdict.reason, highest_epoch=current)
            else:
                refusal = ApiError(428, verdict.reason, highest_epoch=current)
        if refusal.status == 409:
            store.on_stale(endpoint)
            emit(log, LogEvent.STALE_EPOCH_REFUSED, endpoint=endpoint, name=name, epoch=epoch)
        else:
            emit(log, LogEvent.NOT_REGISTERED_REFUSED, endpoint=endpoint, name=name, epoch=epoch)
        raise refusal

    @router.get("/kra-certificate", response_model=m.KraOut)
    def kra_certificate() -> m.KraOut:
        pem = store.keys.kra_certificate.public_bytes(serialization.Encoding.PEM)
        return m.KraOut(certificate_pem=pem.decode())

    @router.post("/register", response_model=m.RoleOut)
    def register(body: m.ConnectorCall) -> m.RoleOut:
        with store.db.transaction() as tx:
            why = revoked(tx, body.name)
        if why is not None:
            raise refuse_revoked("register", body.name, why)
        with store.db.transaction() as tx:
            current, holder = highest(tx)
            verdict = register_verdict(body.epoch, body.name, current, holder)
            if verdict.ok:
                store.db.meta_set(tx, "highest_epoch", str(body.epoch))
                store.db.meta_set(tx, "holder", body.name)
                touch(tx, body.name, epoch=body.epoch)
                store.event(tx, "register", body.name, epoch=body.epoch)
            else:
                refuse(tx, "register", body.name, body.epoch, verdict.reason)
        if not verdict.ok:
            store.on_stale("register")
            emit(
                log,
                LogEvent.STALE_EPOCH_REFUSED,
                endpoint="register",
                name=body.name,
                epoch=body.epoch,
            )
            raise ApiError(409, verdict.reason, highest_epoch=current)
        emit(log, LogEvent.CONNECTOR_REGISTERED, name=body.name, epoch=body.epoch, previous=current)
        store.wake()  # long polls of a deposed epoch must notice now
        return m.RoleOut(name=body.name, role="active", epoch=body.epoch)

    @router.post("/heartbeat", response_model=m.RoleOut)
    def heartbeat(body: m.HeartbeatIn) -> m.RoleOut:
        try:
            # Stored as given and served back as JSON: it must be plain, finite JSON.
            details = json.dumps(body.details, sort_keys=True, allow_nan=False)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"details must be finite JSON: {exc}") from exc
        if len(details) > 20_000:
            raise ApiError(400, "details larger than 20000 characters as JSON")

        def record(tx: sqlite3.Connection) -> None:
            touch(tx, body.name)
            tx.execute(
                "UPDATE connectors SET health = ?, details = ? WHERE name = ?",
                (body.health, details, body.name),
            )

        if body.epoch > 0:
            fenced("heartbeat", body.name, body.epoch, record)
            return m.RoleOut(name=body.name, role="active", epoch=body.epoch)
        with store.db.transaction() as tx:
            why = revoked(tx, body.name)
            if why is None:
                record(tx)
            _, holder = highest(tx)
        if why is not None:
            raise refuse_revoked("heartbeat", body.name, why)
        if holder == body.name:
            return m.RoleOut(name=body.name, role="active", epoch=0)
        return m.RoleOut(name=body.name, role="standby", epoch=0)

    @router.post("/requests/poll", response_model=m.RequestBatch)
    def poll_requests(body: m.PollIn) -> m.RequestBatch:
        deadline = time.monotonic() + body.wait_s
        while True:
            seen = store.work_generation()
            batch = fenced(
                "requests/poll", body.name, body.epoch, lambda tx: take_requests(tx, body)
            )
            if batch or time.monotonic() >= deadline or store.closing.is_set():
                return m.RequestBatch(requests=batch)
            store.wait_for_work(seen, min(5.0, max(0.0, deadline - time.monotonic())))

    def take_requests(tx: sqlite3.Connection, body: m.PollIn) -> list[m.CertificateRequestOut]:
        expired = store.clock() - store.settings.poll_lease_s
        rows = tx.execute(
            "SELECT r.id, r.device_id, r.kind, r.profile_id, p.key_type, p.template, "
            "p.subject_template, p.san_templates, p.validity_days, "
            "u.name AS user_name, u.upn, u.email "
            "FROM requests r JOIN profiles p ON p.id = r.profile_id "
            "JOIN devices d ON d.id = r.device_id JOIN users u ON u.id = d.user_id "
            "WHERE r.state = 'pending' AND r.cancelled IS NULL "
            "AND (r.lease_epoch IS NULL OR r.lease_epoch != ? OR r.lease_at < ?) "
            "ORDER BY r.seq LIMIT ?",
            (body.epoch, expired, body.max_items),
        ).fetchall()
        now = store.clock()
        out = []
        for row in rows:
            tx.execute(
                "UPDATE requests SET lease_epoch = ?, lease_at = ? WHERE id = ?",
                (body.epoch, now, row["id"]),
            )
            out.append(
                m.CertificateRequestOut(
                    id=row["id"],
                    device_id=row["device_id"],
                    kind=row["kind"],
                    profile=m.ProfileSpecOut(
                        id=row["profile_id"],
                        key_type=row["key_type"],
                        template=row["template"],
                        subject_template=row["subject_template"],
                        san_templates=json.loads(row["san_templates"]),
                        validity_days=row["validity_days"],
                    ),
                    variables={
                        "UserName": row["user_name"],
                        "UserPrincipalName": row["upn"],
                        "EmailAddress": row["email"],
                        "DeviceId": row["device_id"],
                    },
                )
            )
        return out

    @router.post("/requests/{request_id}/intent", response_model=m.Ack)
    def record_intent(request_id: m.Id, body: m.IntentIn) -> m.Ack:
        try:
            spki = public_key_fingerprint(body.public_key_pem.encode())
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"public_key_pem is not a PEM public key: {exc}") from exc

        def act(tx: sqlite3.Connection) -> m.Ack:
            req = store.row(tx, "requests", request_id)
            if req["state"] not in ("pending", "in_flight"):
                raise ApiError(400, f"request {request_id} is {req['state']}, not pending")
            if req["state"] == "pending" and req["cancelled"] is not None:
                raise ApiError(400, f"request {request_id} was cancelled ({req['cancelled']})")
            tx.execute(
                "UPDATE requests SET state = 'in_flight', intent_epoch = ?, "
                "intent_spki_sha256 = ?, intent_public_key_pem = ?, intent_at = ?, "
                "connector = ?, updated_at = ? WHERE id = ?",
                (
                    body.epoch,
                    spki,
                    body.public_key_pem,
                    store.now_iso(),
                    body.name,
                    store.now_iso(),
                    request_id,
                ),
            )
            # History of every intent (the row above keeps only the latest): what
            # checkers match CA certificates against.
            tx.execute(
                "INSERT INTO intents(request_id, epoch, connector, spki_sha256, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (request_id, body.epoch, body.name, spki, store.now_iso()),
            )
            return m.Ack(id=request_id, state="in_flight")

        ack = fenced("requests/intent", body.name, body.epoch, act)
        emit(log, LogEvent.INTENT_RECORDED, request=request_id, epoch=body.epoch, spki=spki[:16])
        return ack

    @router.post("/requests/{request_id}/result", response_model=m.Ack)
    def upload_result(request_id: m.Id, body: m.ResultIn) -> m.Ack:
        # Decrypt and parse before taking the lock: the expensive part is pure.
        try:
            envelope = base64.b64decode(body.envelope_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, f"envelope_b64 is not base64: {exc}") from exc
        try:
            pfx = store.keys.open_from_connector(envelope)
        except EnvelopeError as exc:
            raise ApiError(400, f"envelope does not open with the KRA key: {exc}") from exc
        cert = _certificate_from_pfx(pfx)
        if str(cert.serial_number) != body.serial:
            raise ApiError(400, f"serial {body.serial} is not the certificate's serial")
        spki = certificate_fingerprint(cert)
        device_ids = [
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        ]

        def act(tx: sqlite3.Connection) -> m.Ack:
            req = store.row(tx, "requests", request_id)
            if req["serial"] is not None:
                if req["serial"] == body.serial and req["epoch"] == body.epoch:
                    return m.Ack(id=request_id, state=req["state"])  # a retried upload
                raise ApiError(400, f"request {request_id} already has a result")
            if req["state"] != "in_flight" or req["intent_epoch"] != body.epoch:
                raise ApiError(
                    400, f"request {request_id} has no intent recorded under epoch {body.epoch}"
                )
            if spki != req["intent_spki_sha256"]:
                raise ApiError(400, "the certificate's public key is not the recorded intent's")
            if req["device_id"] not in device_ids:
                raise ApiError(
                    400, f"the certificate's subject serialNumber is not {req['device_id']!r}"
                )
            now = store.now_iso()
            tx.execute(
                "UPDATE requests SET state = 'issued', envelope = ?, serial = ?, ca_name = ?, "
                "epoch = ?, certificate_pem = ?, not_before = ?, not_after = ?, issued_at = ?, "
                "connector = ?, updated_at = ? WHERE id = ?",
                (
                    envelope,
                    body.serial,
                    body.ca_name,
                    body.epoch,
                    cert.public_bytes(serialization.Encoding.PEM).decode(),
                    cert.not_valid_before_utc.isoformat(),
                    cert.not_valid_after_utc.isoformat(),
                    now,
                    body.name,
                    now,
                    request_id,
                ),
            )
            if req["cancelled"] is None:
                return m.Ack(id=request_id, state="issued")
            # Cancelled while in flight: never deliver, revoke what was issued.
            event = Event(req["cancelled"])
            outcome = revocation_outcome(event, Mode.HYBRID)
            reason = outcome.reason if outcome else "cessationOfOperation"
            issued = store.row(tx, "requests", request_id)
            store.queue_revocation(tx, issued, event, reason)
            tx.execute(
                "UPDATE requests SET state = 'failed', reason = ? WHERE id = ?",
                (f"cancelled while in flight: {event.value}", request_id),
            )
            return m.Ack(id=request_id, state="failed")

        try:
            ack = fenced("requests/result", body.name, body.epoch, act)
        except ApiError as exc:
            if exc.status != 409:
                emit(
                    log,
                    LogEvent.RESULT_REFUSED,
                    request=request_id,
                    status=exc.status,
                    reason=exc.reason,
                )
            raise
        emit(
            log,
            LogEvent.RESULT_ACCEPTED,
            request=request_id,
            serial=body.serial,
            ca=body.ca_name,
            epoch=body.epoch,
            state=ack.state,
        )
        store.wake()
        return ack

    @router.post("/requests/{request_id}/fail", response_model=m.Ack)
    def fail_request(request_id: m.Id, body: m.FailIn) -> m.Ack:
        def act(tx: sqlite3.Connection) -> m.Ack:
            req = store.row(tx, "requests", request_id)
            if req["state"] == "failed":
                return m.Ack(id=request_id, state="failed")
            if req["state"] not in ("pending", "in_flight"):
                raise ApiError(400, f"request {request_id} is {req['state']}; it cannot fail now")
            retry = body.retryable and req["cancelled"] is None
            state = "pending" if retry else "failed"
            tx.execute(
                "UPDATE requests SET state = ?, reason = ?, intent_epoch = NULL, "
                "intent_spki_sha256 = NULL, intent_public_key_pem = NULL, lease_epoch = NULL, "
                "lease_at = NULL, updated_at = ? WHERE id = ?",
                (state, body.reason, store.now_iso(), request_id),
            )
            return m.Ack(id=request_id, state=state)

        ack = fenced("requests/fail", body.name, body.epoch, act)
        emit(
            log,
            LogEvent.REQUEST_FAILED,
            request=request_id,
            state=ack.state,
            reason=body.reason[:200],
        )
        store.wake()
        return ack

    @router.post("/revocations/poll", response_model=m.RevocationBatch)
    def poll_revocations(body: m.PollIn) -> m.RevocationBatch:
        def take(tx: sqlite3.Connection) -> list[m.RevocationTaskOut]:
            rows = tx.execute(
                "SELECT * FROM revocations WHERE state = 'pending' ORDER BY seq LIMIT ?",
                (body.max_items,),
            ).fetchall()
            return [
                m.RevocationTaskOut(
                    id=r["id"],
                    serial=r["serial"],
                    ca_name=r["ca_name"],
                    reason=r["reason"],
                    request_id=r["request_id"],
                )
                for r in rows
            ]

        deadline = time.monotonic() + body.wait_s
        while True:
            seen = store.work_generation()
            batch = fenced("revocations/poll", body.name, body.epoch, take)
            if batch or time.monotonic() >= deadline or store.closing.is_set():
                return m.RevocationBatch(revocations=batch)
            store.wait_for_work(seen, min(5.0, max(0.0, deadline - time.monotonic())))

    @router.post("/revocations/{revocation_id}/confirm", response_model=m.Ack)
    def confirm_revocation(revocation_id: m.Id, body: m.ConnectorCall) -> m.Ack:
        def act(tx: sqlite3.Connection) -> m.Ack:
            rev = store.row(tx, "revocations", revocation_id)
            if rev["state"] == "pending":
                tx.execute(
                    "UPDATE revocations SET state = 'done', done_at = ?, done_epoch = ?, "
                    "done_by = ? WHERE id = ?",
                    (store.now_iso(), body.epoch, body.name, revocation_id),
                )
                tx.execute(
                    "UPDATE requests SET revocation = 'done', updated_at = ? WHERE id = ?",
                    (store.now_iso(), rev["request_id"]),
                )
            return m.Ack(id=revocation_id, state="done")

        ack = fenced("revocations/confirm", body.name, body.epoch, act)
        emit(log, LogEvent.REVOCATION_CONFIRMED, revocation=revocation_id, epoch=body.epoch)
        return ack

    @router.post("/intents/stale", response_model=m.IntentList)
    def stale_intents(body: m.ConnectorCall) -> m.IntentList:
        def act(tx: sqlite3.Connection) -> m.IntentList:
            rows = tx.execute(
                "SELECT * FROM requests WHERE state = 'in_flight' AND intent_epoch < ? "
                "ORDER BY seq",
                (body.epoch,),
            ).fetchall()
            return m.IntentList(
                intents=[
                    m.IntentOut(
                        request_id=r["id"],
                        epoch=r["intent_epoch"],
                        public_key_pem=r["intent_public_key_pem"],
                        spki_sha256=r["intent_spki_sha256"],
                        cancelled=r["cancelled"] is not None,
                    )
                    for r in rows
                ]
            )

        return fenced("intents/stale", body.name, body.epoch, act)

    return router


def _certificate_from_pfx(pfx: bytes) -> x509.Certificate:
    try:
        loaded = pkcs12.load_pkcs12(pfx, None)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"the envelope does not hold a password-less PKCS#12: {exc}") from exc
    if loaded.cert is None or loaded.key is None:
        raise ApiError(400, "the PKCS#12 must hold the private key and its certificate")
    cert = loaded.cert.certificate
    key_spki = loaded.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cert_spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if key_spki != cert_spki:
        raise ApiError(400, "the PKCS#12's private key does not belong to its certificate")
    return cert
