"""Connector API (/api/v1/connector): registration, fencing, work queues, results.

Every call carries ``(name, epoch)``. An epoch lower than the highest ever
registered is refused with 409, recorded in ``stale_rejections`` and counted,
and changes nothing else. Only the connector that registered the highest
epoch may poll, record intents, upload, fail and confirm.

This module: registration, heartbeats, the work queues (requests and revocations to poll),
confirmed revocations and stale intents. What the connector reports about a request
it polled (intent, result, failure; single or batched) is in
:mod:`chaos.service._connector_results`, added to this router in route order.
"""

from __future__ import annotations

import json
import sqlite3
import time

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service._connector_results import add_result_routes
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.fencing import Gate
from chaos.service.store import STOOD_DOWN_EPOCH, ApiError, Store
from chaos.service.takeover import (
    stale_intents_of,
    superseded_intents_of,
    uncertain_deliveries_of,
)

__all__ = ["connector_router"]


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
            poll = m.PollIn(
                name=body.name,
                epoch=body.epoch,
                max_items=max(body.max_items, 1),
                received=body.received,
            )
            requests, lease_seq = take_requests(tx, poll) if body.max_items else ([], None)
            return m.RegisterOut(
                name=body.name,
                role="active",
                epoch=body.epoch,
                intents=stale_intents_of(tx, body.epoch),
                requests=requests,
                lease_seq=lease_seq,
                superseded=superseded_intents_of(
                    tx, now=store.clock(), within_s=body.superseded_within_s
                ),
                uncertain=uncertain_deliveries_of(
                    tx, now=store.clock(), within_s=body.superseded_within_s
                ),
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
            answer = fenced("requests/poll", body.name, body.epoch, lambda tx: poll_once(tx, body))
            if answer.requests or time.monotonic() >= deadline or store.closing.is_set():
                return answer
            store.wait_for_work(seen, min(5.0, max(0.0, deadline - time.monotonic())))

    def revocations_waiting(tx: sqlite3.Connection) -> int:
        row = tx.execute("SELECT COUNT(*) FROM revocations WHERE state = 'pending'").fetchone()
        return int(row[0])

    def poll_once(tx: sqlite3.Connection, body: m.PollIn) -> m.RequestBatch:
        """One take, and the revocations waiting, in one transaction."""
        requests, lease_seq = take_requests(tx, body)
        return m.RequestBatch(
            requests=requests, revocations_waiting=revocations_waiting(tx), lease_seq=lease_seq
        )

    def take_requests(
        tx: sqlite3.Connection, body: m.PollIn
    ) -> tuple[list[m.CertificateRequestOut], int | None]:
        """Lease up to ``max_items`` to the poller's epoch: what nobody holds, and what
        an answer it never received leased to it (``received``). The lease sequence
        of this answer, None when it is empty."""
        expired = store.clock() - store.settings.poll_lease_s
        rows = tx.execute(
            "SELECT r.id, r.device_id, r.kind, r.profile_id, r.scope, r.user_id, p.key_type, "
            "p.template, p.subject_template, p.san_templates, p.validity_days, "
            "u.name AS user_name, u.upn, u.email "
            "FROM requests r JOIN profiles p ON p.id = r.profile_id "
            "LEFT JOIN devices d ON d.id = r.device_id AND r.scope = 'device' "
            "JOIN users u ON u.id = COALESCE(r.user_id, d.user_id) "
            "WHERE r.state = 'pending' AND r.cancelled IS NULL "
            # Not leased to this epoch, or the lease expired, or an answer after the
            # last one the poller received leased it (NULL received: never true).
            "AND (r.lease_epoch IS NULL OR r.lease_epoch != ? OR r.lease_at < ? "
            "OR r.lease_seq > ?) "
            "ORDER BY r.seq LIMIT ?",
            (body.epoch, expired, body.received, body.max_items),
        ).fetchall()
        if not rows:
            return [], None
        now = store.clock()
        lease_seq = store.db.next_seq(tx)
        out = []
        for row in rows:
            tx.execute(
                "UPDATE requests SET lease_epoch = ?, lease_at = ?, lease_seq = ? WHERE id = ?",
                (body.epoch, now, lease_seq, row["id"]),
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
        return out, lease_seq

    # Intent, result and fail routes, between the two polls: route order is the order
    # the OpenAPI schema lists the paths in.
    add_result_routes(router, store, gate)

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
