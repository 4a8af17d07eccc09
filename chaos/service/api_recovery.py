"""Key recovery (/api/v1/admin/users/{id}/key-recovery): a user's escrow, to a recovery agent.

    POST /api/v1/admin/users/ann/key-recovery
    {"recovery_agent_certificate_pem": "-----BEGIN CERTIFICATE-----...", "reason": "ticket 42"}
    -> {"user_id": "ann", "recovery_agent_sha256": "...", "keys": [{"serial": ..., "escrow":
        "current", "envelope_b64": "<CMS EnvelopedData to the agent, holding the PFX>"}, ...]}

Every escrowed key of the user's user-scoped certificates (current, history,
withdrawn) is opened with the KRA key and sealed again to the recovery agent's
certificate: the PFX never leaves the service in clear. It needs an admin
credential configured (403 on a service whose admin API is open), is limited
to ``key_recovery_limit`` per ``key_recovery_window_s`` for the whole service
(429 with Retry-After), and each recovery is an audit event (``key-recovered``
in ``GET /api/v1/read/events``) and a log line 1180; a refusal is a log line
1181 and changes nothing. The rules are :mod:`chaos.service.recovery`.
"""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.keys import certificate_fingerprint
from chaos.service.recovery import recovery_agent, recovery_allowed
from chaos.service.store import ApiError, Store
from connector.pki.envelope import seal

__all__ = ["KeyRecoveryIn", "KeyRecoveryOut", "RecoveredKey", "recovery_router"]

RECOVERED = "key-recovered"  # the audit event's kind
_NEEDS_CREDENTIAL = (
    "key recovery needs an admin credential: start the service with --admin-token-file, "
    "--admin-token-env or --admin-credential-file"
)


class KeyRecoveryIn(m.Strict):
    recovery_agent_certificate_pem: m.Pem
    reason: m.Reason  # why (a ticket): kept in the audit event
    profile_id: m.Id | None = None  # only this profile's keys (default: every profile)


class RecoveredKey(m.Strict):
    request_id: str
    profile_id: str
    serial: str
    ca_name: str | None
    escrow: str  # current | history | withdrawn
    not_after: str | None
    envelope_b64: Annotated[str, Field(description="DER CMS EnvelopedData to the agent: a PFX")]


class KeyRecoveryOut(m.Strict):
    user_id: str
    recovery_agent_sha256: str
    keys: list[RecoveredKey]


def _escrow(tx: sqlite3.Connection, user_id: str, profile_id: str | None) -> list[sqlite3.Row]:
    return list(
        tx.execute(
            "SELECT id, profile_id, serial, ca_name, escrow, not_after, envelope FROM requests "
            "WHERE scope = 'user' AND user_id = ? AND envelope IS NOT NULL AND serial IS NOT NULL "
            "AND escrow IN ('current', 'history', 'withdrawn') "
            "AND (? IS NULL OR profile_id = ?) ORDER BY seq",
            (user_id, profile_id, profile_id),
        )
    )


def _recent(tx: sqlite3.Connection) -> list[float]:
    return [
        dt.datetime.fromisoformat(r["at"]).timestamp()
        for r in tx.execute("SELECT at FROM events WHERE kind = ?", (RECOVERED,))
    ]


def recovery_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 401, 403, 404, 413, 429),
        prefix="/api/v1/admin",
        tags=["admin"],
        dependencies=[Depends(auth.admin)],
    )

    def recover(user_id: str, body: KeyRecoveryIn) -> KeyRecoveryOut:
        if not auth.admin_required:
            raise ApiError(403, _NEEDS_CREDENTIAL)
        now = store.clock()
        agent = recovery_agent(
            body.recovery_agent_certificate_pem, dt.datetime.fromtimestamp(now, dt.UTC)
        )
        if agent.certificate is None:
            raise ApiError(400, agent.problem or "recovery agent certificate refused")
        fingerprint = certificate_fingerprint(agent.certificate)
        with store.db.transaction() as tx:
            store.row(tx, "users", user_id)
            rows = _escrow(tx, user_id, body.profile_id)
            if not rows:
                scope = f" for profile {body.profile_id!r}" if body.profile_id else ""
                raise ApiError(404, f"user {user_id!r} has no escrowed key{scope}")
            limit = store.settings.key_recovery_limit
            window = store.settings.key_recovery_window_s
            verdict = recovery_allowed(recent=_recent(tx), now=now, limit=limit, window_s=window)
            if not verdict.allowed:
                raise ApiError(429, verdict.reason, retry_after_s=verdict.retry_after_s)
            keys = [
                RecoveredKey(
                    request_id=r["id"],
                    profile_id=r["profile_id"],
                    serial=r["serial"],
                    ca_name=r["ca_name"],
                    escrow=r["escrow"],
                    not_after=r["not_after"],
                    envelope_b64=base64.b64encode(
                        seal(store.keys.open_from_connector(r["envelope"]), agent.certificate)
                    ).decode(),
                )
                for r in rows
            ]
            store.event(
                tx,
                RECOVERED,
                user_id,
                reason=body.reason,
                recovery_agent_sha256=fingerprint,
                recovery_agent_subject=agent.certificate.subject.rfc4514_string()[:200],
                serials=[k.serial for k in keys],
            )
        emit(
            log,
            LogEvent.KEY_RECOVERED,
            user=user_id,
            keys=len(keys),
            agent_sha256=fingerprint,
            reason=body.reason[:200],
        )
        return KeyRecoveryOut(user_id=user_id, recovery_agent_sha256=fingerprint, keys=keys)

    @router.post("/users/{user_id}/key-recovery", response_model=KeyRecoveryOut)
    def key_recovery(user_id: m.Id, body: KeyRecoveryIn) -> KeyRecoveryOut:
        """A user's escrowed PFX files, each sealed to the recovery agent's certificate."""
        try:
            return recover(user_id, body)
        except ApiError as exc:
            emit(
                log, LogEvent.KEY_RECOVERY_REFUSED, user=user_id, status=exc.status, why=exc.reason
            )
            raise

    return router
