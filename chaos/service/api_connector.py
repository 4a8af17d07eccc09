"""Connector API (/api/v1/connector): registration, fencing, work queues, results.

Every call carries ``(name, epoch)``. An epoch lower than the highest ever
registered is refused with 409, recorded in ``stale_rejections`` and counted,
and changes nothing else. Only the connector that registered the highest
epoch may poll, record intents, upload, fail and confirm.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.fencing import Gate
from chaos.service.keys import public_key_fingerprint
from chaos.service.rules import Event, Mode, revocation_outcome
from chaos.service.store import STOOD_DOWN_EPOCH, ApiError, Store
from chaos.service.takeover import stale_intents_of
from chaos.service.upload import CheckedUpload, check_upload

__all__ = ["connector_router"]

T = TypeVar("T")


def refusal_or(check: Callable[[], T]) -> T | ApiError:
    """What ``check`` gives, or the refusal it raised: one item's check before a batch."""
    try:
        return check()
    except ApiError as exc:
        return exc


def connector_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 401, 403, 404, 409, 413, 428, 429),
        prefix="/api/v1/connector",
        tags=["connector"],
        dependencies=[Depends(auth.connector)],
    )

    gate = Gate(store)
    fenced = gate.fenced

    @router.get("/kra-certificate", response_model=m.KraOut)
    def kra_certificate() -> m.KraOut:
        pem = store.keys.kra_certificate.public_bytes(serialization.Encoding.PEM)
        return m.KraOut(certificate_pem=pem.decode())

    @router.post("/register", response_model=m.RegisterOut)
    def register(body: m.RegisterIn) -> m.RegisterOut:
        gate.register(body.name, body.epoch)

        # A takeover's first reads ride on the registration, fenced like their own calls:
        # over a WAN each call is a round trip between "elected" and the first certificate.
        def first_reads(tx: sqlite3.Connection) -> m.RegisterOut:
            poll = m.PollIn(name=body.name, epoch=body.epoch, max_items=max(body.max_items, 1))
            return m.RegisterOut(
                name=body.name,
                role="active",
                epoch=body.epoch,
                intents=stale_intents_of(tx, body.epoch),
                requests=take_requests(tx, poll) if body.max_items else [],
            )

        return fenced("register", body.name, body.epoch, first_reads)

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
            gate.touch(tx, body.name)
            tx.execute(
                "UPDATE connectors SET health = ?, details = ? WHERE name = ?",
                (body.health, details, body.name),
            )

        if body.epoch > 0:
            fenced("heartbeat", body.name, body.epoch, record)
            return m.RoleOut(name=body.name, role="active", epoch=body.epoch)
        with store.db.transaction() as tx:
            gate.check_not_revoked(tx, "heartbeat", body.name)
            record(tx)
            highest, holder = gate.highest(tx)
            if holder == body.name:
                # The holder's name standing by: that process restarted or lost its
                # lease. Not active until it registers a newer epoch.
                store.db.meta_set(tx, STOOD_DOWN_EPOCH, str(highest))
        return m.RoleOut(name=body.name, role="standby", epoch=0)

    @router.post("/requests/poll", response_model=m.RequestBatch)
    def poll_requests(body: m.PollIn) -> m.RequestBatch:
        deadline = time.monotonic() + body.wait_s
        while True:
            seen = store.work_generation()
            batch, revocations = fenced(
                "requests/poll",
                body.name,
                body.epoch,
                lambda tx: (take_requests(tx, body), revocations_waiting(tx)),
            )
            if batch or time.monotonic() >= deadline or store.closing.is_set():
                return m.RequestBatch(requests=batch, revocations_waiting=revocations)
            store.wait_for_work(seen, min(5.0, max(0.0, deadline - time.monotonic())))

    def revocations_waiting(tx: sqlite3.Connection) -> int:
        row = tx.execute("SELECT COUNT(*) FROM revocations WHERE state = 'pending'").fetchone()
        return int(row[0])

    def take_requests(tx: sqlite3.Connection, body: m.PollIn) -> list[m.CertificateRequestOut]:
        expired = store.clock() - store.settings.poll_lease_s
        rows = tx.execute(
            "SELECT r.id, r.device_id, r.kind, r.profile_id, r.scope, r.user_id, p.key_type, "
            "p.template, p.subject_template, p.san_templates, p.validity_days, "
            "u.name AS user_name, u.upn, u.email "
            "FROM requests r JOIN profiles p ON p.id = r.profile_id "
            "LEFT JOIN devices d ON d.id = r.device_id AND r.scope = 'device' "
            "JOIN users u ON u.id = COALESCE(r.user_id, d.user_id) "
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
            variables = {
                "UserName": row["user_name"],
                "UserPrincipalName": row["upn"],
                "EmailAddress": row["email"],
            }
            if row["scope"] == "device":
                # A user-scoped certificate names no device: its subject serialNumber
                # is the user id, which travels as ``device_id``.
                variables["DeviceId"] = row["device_id"]
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
                    variables=variables,
                    scope=row["scope"],
                    user_id=row["user_id"],
                )
            )
        return out

    def parse_spki(public_key_pem: str) -> str:
        try:
            return public_key_fingerprint(public_key_pem.encode())
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"public_key_pem is not a PEM public key: {exc}") from exc

    def intent_act(
        tx: sqlite3.Connection, spki: str, *, name: str, epoch: int, request_id: str, pem: str
    ) -> m.Ack:
        req = store.row(tx, "requests", request_id)
        if req["state"] not in ("pending", "in_flight"):
            raise ApiError(400, f"request {request_id} is {req['state']}, not pending")
        if req["state"] == "pending" and req["cancelled"] is not None:
            raise ApiError(400, f"request {request_id} was cancelled ({req['cancelled']})")
        tx.execute(
            "UPDATE requests SET state = 'in_flight', intent_epoch = ?, "
            "intent_spki_sha256 = ?, intent_public_key_pem = ?, intent_at = ?, "
            "connector = ?, updated_at = ? WHERE id = ?",
            (epoch, spki, pem, store.now_iso(), name, store.now_iso(), request_id),
        )
        # History of every intent (the row above keeps only the latest): what
        # checkers match CA certificates against.
        tx.execute(
            "INSERT INTO intents(request_id, epoch, connector, spki_sha256, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (request_id, epoch, name, spki, store.now_iso()),
        )
        return m.Ack(id=request_id, state="in_flight")

    @router.post("/requests/{request_id}/intent", response_model=m.Ack)
    def record_intent(request_id: m.Id, body: m.IntentIn) -> m.Ack:
        spki = parse_spki(body.public_key_pem)
        ack = fenced(
            "requests/intent",
            body.name,
            body.epoch,
            partial(
                intent_act,
                name=body.name,
                epoch=body.epoch,
                request_id=request_id,
                pem=body.public_key_pem,
                spki=spki,
            ),
        )
        emit(log, LogEvent.INTENT_RECORDED, request=request_id, epoch=body.epoch, spki=spki[:16])
        return ack

    @router.post("/requests/intents", response_model=m.BatchAck)
    def record_intents(body: m.IntentsIn) -> m.BatchAck:
        """Each item as ``/requests/{id}/intent`` would; one refused item spoils no other."""
        spkis = [refusal_or(partial(parse_spki, item.public_key_pem)) for item in body.items]

        def act(tx: sqlite3.Connection) -> list[m.ItemOutcome]:
            return [
                each_item(
                    tx,
                    item.request_id,
                    partial(
                        intent_act,
                        name=body.name,
                        epoch=body.epoch,
                        request_id=item.request_id,
                        pem=item.public_key_pem,
                    ),
                    spki,
                )
                for item, spki in zip(body.items, spkis, strict=True)
            ]

        outcomes = fenced("requests/intents", body.name, body.epoch, act)
        for item, spki, outcome in zip(body.items, spkis, outcomes, strict=True):
            if outcome.status is None and isinstance(spki, str):
                emit(
                    log,
                    LogEvent.INTENT_RECORDED,
                    request=item.request_id,
                    epoch=body.epoch,
                    spki=spki[:16],
                )
        return m.BatchAck(items=outcomes)

    def each_item(
        tx: sqlite3.Connection,
        item_id: str,
        act: Callable[[sqlite3.Connection, T], m.Ack],
        checked: T | ApiError,
    ) -> m.ItemOutcome:
        """Run ``act`` on one item's ``checked`` input in a savepoint: a refusal undoes
        that item only. ``checked`` may be the item's refusal by the checks made before
        the transaction: nothing to run, nothing to undo.
        """
        if isinstance(checked, ApiError):
            return m.ItemOutcome(id=item_id, status=checked.status, reason=checked.reason)
        tx.execute("SAVEPOINT item")
        try:
            ack = act(tx, checked)
        except ApiError as exc:
            tx.execute("ROLLBACK TO item")
            tx.execute("RELEASE item")
            return m.ItemOutcome(id=item_id, status=exc.status, reason=exc.reason)
        tx.execute("RELEASE item")
        return m.ItemOutcome(id=item_id, state=ack.state)

    def result_act(
        tx: sqlite3.Connection,
        checked: CheckedUpload,
        *,
        name: str,
        epoch: int,
        item: m.ResultItem,
    ) -> m.Ack:
        request_id = item.request_id
        req = store.row(tx, "requests", request_id)
        if req["serial"] is not None:
            if req["serial"] == item.serial and req["epoch"] == epoch:
                return m.Ack(id=request_id, state=req["state"])  # a retried upload
            raise ApiError(400, f"request {request_id} already has a result")
        if req["state"] != "in_flight" or req["intent_epoch"] != epoch:
            raise ApiError(400, f"request {request_id} has no intent recorded under epoch {epoch}")
        if checked.spki_sha256 != req["intent_spki_sha256"]:
            raise ApiError(400, "the certificate's public key is not the recorded intent's")
        if req["device_id"] not in checked.device_ids:
            raise ApiError(
                400, f"the certificate's subject serialNumber is not {req['device_id']!r}"
            )
        now = store.now_iso()
        tx.execute(
            "UPDATE requests SET state = 'issued', envelope = ?, serial = ?, ca_name = ?, "
            "epoch = ?, certificate_pem = ?, not_before = ?, not_after = ?, issued_at = ?, "
            "connector = ?, updated_at = ? WHERE id = ?",
            (
                checked.envelope,
                item.serial,
                item.ca_name,
                epoch,
                checked.certificate.public_bytes(serialization.Encoding.PEM).decode(),
                checked.certificate.not_valid_before_utc.isoformat(),
                checked.certificate.not_valid_after_utc.isoformat(),
                now,
                name,
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

    def log_result(epoch: int, item: m.ResultItem, outcome: m.ItemOutcome) -> None:
        if outcome.status is not None:
            if outcome.status != 409:
                emit(
                    log,
                    LogEvent.RESULT_REFUSED,
                    request=item.request_id,
                    status=outcome.status,
                    reason=outcome.reason,
                )
            return
        emit(
            log,
            LogEvent.RESULT_ACCEPTED,
            request=item.request_id,
            serial=item.serial,
            ca=item.ca_name,
            epoch=epoch,
            state=outcome.state,
        )

    @router.post("/requests/{request_id}/result", response_model=m.Ack)
    def upload_result(request_id: m.Id, body: m.ResultIn) -> m.Ack:
        # Refuse a revoked or fenced caller before any RSA work on what it sent
        # (the same checks run again, atomically, with the write below).
        gate.precheck("requests/result", body.name, body.epoch)
        item = m.ResultItem(
            request_id=request_id,
            envelope_b64=body.envelope_b64,
            serial=body.serial,
            ca_name=body.ca_name,
        )
        try:
            # Decrypt and parse before taking the write lock: the expensive part is pure.
            checked = check_upload(store.keys, body.envelope_b64, body.serial)
            ack = fenced(
                "requests/result",
                body.name,
                body.epoch,
                partial(result_act, name=body.name, epoch=body.epoch, item=item, checked=checked),
            )
        except ApiError as exc:
            refused = m.ItemOutcome(id=request_id, status=exc.status, reason=exc.reason)
            log_result(body.epoch, item, refused)
            raise
        log_result(body.epoch, item, m.ItemOutcome(id=request_id, state=ack.state))
        store.wake()
        return ack

    @router.post("/requests/results", response_model=m.BatchAck)
    def upload_results(body: m.ResultsIn) -> m.BatchAck:
        """Each item as ``/requests/{id}/result`` would; one refused item spoils no other."""
        gate.precheck("requests/results", body.name, body.epoch)
        checks = [
            refusal_or(partial(check_upload, store.keys, item.envelope_b64, item.serial))
            for item in body.items
        ]

        def act(tx: sqlite3.Connection) -> list[m.ItemOutcome]:
            return [
                each_item(
                    tx,
                    item.request_id,
                    partial(result_act, name=body.name, epoch=body.epoch, item=item),
                    checked,
                )
                for item, checked in zip(body.items, checks, strict=True)
            ]

        outcomes = fenced("requests/results", body.name, body.epoch, act)
        for item, outcome in zip(body.items, outcomes, strict=True):
            log_result(body.epoch, item, outcome)
        store.wake()
        return m.BatchAck(items=outcomes)

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
            return [m.RevocationTaskOut.from_row(r) for r in rows]

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
        return fenced(
            "intents/stale",
            body.name,
            body.epoch,
            lambda tx: m.IntentList(intents=stale_intents_of(tx, body.epoch)),
        )

    return router
