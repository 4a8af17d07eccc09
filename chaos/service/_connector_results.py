"""Connector API, what the active connector reports about a request it polled: its
intent (the public key it will have certified), the result (the sealed certificate),
or a failure. Intents and results also come in batches: one refused item spoils no other.

    router = APIRouter(prefix="/api/v1/connector", dependencies=[Depends(auth.connector)])
    gate = Gate(store)
    add_result_routes(router, store, gate)  # POST /requests/{id}/intent ... /requests/{id}/fail

The routes are added to the router passed in, where :mod:`api_connector` calls this:
after the request poll, before the revocation poll (route order is the order the
OpenAPI schema lists them in). Every call is fenced (:mod:`chaos.service.fencing`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from chaos.service import models as m
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.fencing import Gate
from chaos.service.keys import public_key_fingerprint
from chaos.service.rules import Event, Mode, revocation_outcome
from chaos.service.store import ApiError, Store
from chaos.service.upload import CheckedUpload, check_upload

__all__ = ["add_result_routes"]

T = TypeVar("T")


def refusal_or(check: Callable[[], T]) -> T | ApiError:
    """What ``check`` gives, or the refusal it raised: one item's check before a batch."""
    try:
        return check()
    except ApiError as exc:
        return exc


def add_result_routes(router: APIRouter, store: Store, gate: Gate) -> None:
    """Add intent, result and fail routes, single and batch, to the connector ``router``."""
    fenced = gate.fenced

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
            "INSERT INTO intents(request_id, epoch, connector, spki_sha256, at, "
            "public_key_pem, at_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_id, epoch, name, spki, store.now_iso(), pem, store.clock()),
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
        if item.uncertain:
            tx.execute(
                "UPDATE intents SET uncertain = 1 WHERE request_id = ? AND spki_sha256 = ?",
                (request_id, checked.spki_sha256),
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
            uncertain=body.uncertain,
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
