"""Bodies of the read API: certificates, requests, user copies, audit events, the
revocation table, revocations, connectors and their rejections.

    from chaos.service import models as m

    @router.get("/requests", response_model=list[m.RequestOut])
    def requests(...) -> list[m.RequestOut]: ...   # m.RequestOut.from_row(row) per DB row

Plain strings mostly: these are answers, built from the service's own rows.
Importers use :mod:`chaos.service.models`, which re-exports every body.
"""

from __future__ import annotations

from typing import Any, Literal

from chaos.service._model_base import Strict

__all__ = [
    "AuditEventOut",
    "CertificateOut",
    "ConnectorOut",
    "RejectionOut",
    "RequestOut",
    "RevocationOut",
    "TableRowOut",
    "UserCopyOut",
]


class CertificateOut(Strict):
    request_id: str
    serial: str
    issuer_ca: str
    device_id: str
    profile_id: str
    epoch: int
    state: str
    revocation: str | None
    not_after: str | None


class RequestOut(Strict):
    id: str
    device_id: str
    profile_id: str
    kind: str
    replaces: str | None
    state: str
    reason: str | None
    cancelled: str | None
    intent_epoch: int | None
    epoch: int | None
    connector: str | None
    serial: str | None
    ca_name: str | None
    revocation: str | None  # None | pending | done
    device_delete: str | None  # None | pending | done
    created_at: str
    updated_at: str
    issued_at: str | None
    delivered_at: str | None
    installed_at: str | None
    scope: str = "device"
    user_id: str | None = None
    escrow: str | None = None  # scope user: current | history | withdrawn


class UserCopyOut(Strict):
    """One device's copy of a user-scoped certificate (read API)."""

    id: str
    request_id: str
    device_id: str
    user_id: str
    profile_id: str
    usage: str  # current | decrypt-only
    state: str  # ready | delivered | installed | failed | withdrawn
    reason: str | None
    device_delete: str | None
    delivered_at: str | None
    installed_at: str | None


class AuditEventOut(Strict):
    """One audit event (read API ``/events``): what happened to what, and the details."""

    id: int
    at: str
    kind: str  # admin-action, key-recovered, user-renewal-finished, ...
    subject: str
    detail: dict[str, Any]


class TableRowOut(Strict):
    """One row of a revocation table (read API ``/revocation-table``)."""

    event: str
    scope: str
    standalone: str
    hybrid: str
    crl_reason: str


class RevocationOut(Strict):
    id: str
    request_id: str
    serial: str
    ca_name: str
    reason: str
    event: str
    state: str
    created_at: str
    done_at: str | None
    done_epoch: int | None
    done_by: str | None = None  # the connector that confirmed it


class ConnectorOut(Strict):
    name: str
    epoch: int
    role: Literal["active", "standby"]
    health: Literal["healthy", "warning", "unhealthy", "unknown"]
    last_seen: str
    details: dict[str, Any]
    revoked: bool = False


class RejectionOut(Strict):
    id: int
    at: str
    name: str
    epoch: int
    highest_epoch: int
    endpoint: str
    reason: str
