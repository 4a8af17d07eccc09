"""Connector enrollment and certificate renewal (issue 8).

* ``POST /api/v1/admin/connectors/{name}/enrollment-token`` (admin) ``{ttl_s}``
  -> ``{name, token, expires_at}``: the token is shown once, stored as SHA-256.
* ``POST /api/v1/enroll`` ``{token, csr_pem}`` -> ``{name, certificate_pem,
  ca_certificate_pem, not_after}``: no client certificate needed; the token is
  the proof, good once, until it expires.
* ``POST /api/v1/connector/certificate/renew`` ``{name, csr_pem}`` (mutual TLS
  with the current certificate) -> the same shape, same name.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Depends, Request

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.enrollment import ConnectorCA, create_token, enroll, renew
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.store import ApiError, Store

__all__ = ["enroll_router"]


def _out(ca: ConnectorCA, cert: x509.Certificate, name: str) -> m.EnrolledOut:
    return m.EnrolledOut(
        name=name,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        ca_certificate_pem=ca.pem,
        not_after=cert.not_valid_after_utc.isoformat(),
    )


def enroll_router(store: Store, auth: AuthPolicy, ca: ConnectorCA) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["enrollment"])

    @router.post(
        "/admin/connectors/{name}/enrollment-token",
        response_model=m.EnrollmentTokenOut,
        status_code=201,
        dependencies=[Depends(auth.admin)],
        responses=m.errors(400, 401, 403, 413),  # 400: a body that is not JSON
    )
    def create_enrollment_token(name: m.Id, body: m.EnrollmentTokenIn) -> m.EnrollmentTokenOut:
        with store.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM revoked_connectors WHERE name = ?", (name,)).fetchone():
                raise ApiError(403, f"connector {name!r} was revoked by an admin")
            token, expires_at = create_token(store, tx, name, body.ttl_s)
        emit(log, LogEvent.ENROLLMENT_TOKEN_CREATED, name=name, expires_at=expires_at)
        return m.EnrollmentTokenOut(name=name, token=token, expires_at=expires_at)

    @router.post("/enroll", response_model=m.EnrolledOut, responses=m.errors(400, 403, 413))
    def enroll_connector(body: m.EnrollIn) -> m.EnrolledOut:
        try:
            cert = enroll(store, ca, body.token, body.csr_pem)
        except ApiError as exc:
            if exc.status == 403:
                auth.on_refused("enroll", "bad_token")
            emit(log, LogEvent.ENROLLMENT_REFUSED, status=exc.status)
            raise
        name = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        emit(log, LogEvent.CONNECTOR_ENROLLED, name=name, serial=cert.serial_number)
        return _out(ca, cert, name)

    @router.post(
        "/connector/certificate/renew",
        response_model=m.EnrolledOut,
        dependencies=[Depends(auth.connector)],
        responses=m.errors(400, 401, 403, 413),
    )
    def renew_certificate(request: Request, body: m.RenewIn) -> m.EnrolledOut:
        name = getattr(request.state, "connector_name", None)
        if name is None:
            raise ApiError(400, "renewal needs mutual TLS with the current connector certificate")
        cert = renew(store, ca, name, body.csr_pem)
        emit(log, LogEvent.CONNECTOR_CERT_RENEWED, name=name, serial=cert.serial_number)
        return _out(ca, cert, name)

    return router
