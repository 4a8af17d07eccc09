"""Imported PFX (/api/v1/admin/users/{id}/imported-pfx) and the KRA certificate for it.

    GET  /api/v1/admin/kra-certificate                 -> {"certificate_pem": ...}
    POST /api/v1/admin/users/ann/imported-pfx
    {"profile_id": "smime-imported", "envelope_b64": "<CMS EnvelopedData to the KRA>"}
    -> 201 {"request_id": "imp-...", "serial": "...", "issuer": "imported:...", ...}

``pfxha service import-pfx`` seals a PFX file to the KRA certificate and posts
it. The checks and the bookkeeping are :mod:`chaos.service.imported`; every
refusal is a 4xx with the reason and changes nothing (log 1191), an import is
log 1190 and the audit event ``pfx-imported``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends
from pydantic import Field

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.imported import check_import, issuer_name, store_import
from chaos.service.store import ApiError, Store
from connector.pki.envelope import EnvelopeError

__all__ = ["ImportIn", "ImportOut", "import_router"]


class ImportIn(m.Strict):
    profile_id: m.Id
    # The body limit (--max-body) bounds it too; a PFX with its chain is a few KB.
    envelope_b64: str = Field(min_length=1, max_length=700_000)


class ImportOut(m.Strict):
    request_id: str
    user_id: str
    profile_id: str
    serial: str
    issuer: str
    not_after: str
    superseded: str | None  # the previous import, now a decrypt-only history key


def import_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 401, 404, 409, 413),
        prefix="/api/v1/admin",
        tags=["admin"],
        dependencies=[Depends(auth.admin)],
    )

    @router.get("/kra-certificate", response_model=m.KraOut)
    def kra_certificate() -> m.KraOut:
        """The certificate an imported PFX is sealed to (as the connector seals to it)."""
        pem = store.keys.kra_certificate.public_bytes(serialization.Encoding.PEM)
        return m.KraOut(certificate_pem=pem.decode())

    def accept(user_id: str, body: ImportIn) -> ImportOut:
        try:
            envelope = base64.b64decode(body.envelope_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, f"envelope_b64: not base64 ({exc})") from exc
        try:
            pfx = store.keys.open_from_connector(envelope)
        except EnvelopeError as exc:
            raise ApiError(
                400,
                f"envelope_b64: does not open with the service's KRA key ({exc}); seal the "
                "PFX to GET /api/v1/admin/kra-certificate (pfxha service import-pfx does)",
            ) from exc
        check = check_import(pfx, dt.datetime.fromtimestamp(store.clock(), dt.UTC))
        if check.certificate is None:
            raise ApiError(400, f"envelope_b64: {check.problem}")
        with store.db.transaction() as tx:
            request_id, superseded = store_import(
                store,
                tx,
                user_id=user_id,
                profile_id=body.profile_id,
                envelope=envelope,
                certificate=check.certificate,
            )
        cert = check.certificate
        out = ImportOut(
            request_id=request_id,
            user_id=user_id,
            profile_id=body.profile_id,
            serial=str(cert.serial_number),
            issuer=issuer_name(cert),
            not_after=cert.not_valid_after_utc.isoformat(),
            superseded=superseded,
        )
        emit(
            log, LogEvent.PFX_IMPORTED, user=user_id, profile=body.profile_id,
            serial=out.serial, issuer=out.issuer, superseded=superseded,
        )  # fmt: skip
        return out

    @router.post("/users/{user_id}/imported-pfx", response_model=ImportOut, status_code=201)
    def import_pfx(user_id: m.Id, body: ImportIn) -> ImportOut:
        """Deliver an admin's PFX (sealed to the KRA) to every device of the user."""
        try:
            return accept(user_id, body)
        except ApiError as exc:
            emit(log, LogEvent.PFX_IMPORT_REFUSED, user=user_id, status=exc.status, why=exc.reason)
            raise

    return router
