"""Request and response bodies of the service API (strict pydantic models).

Strict types (no "1" for 1), unknown fields refused, every string and number
bounded: bad input is a 422 with the reason, before any handler runs. Refusals
the schema cannot express (a PFX that does not match its intent) are 400.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from chaos.service.rules import MAX_EPOCH

__all__ = [
    "Epoch",
    "Id",
    "Strict",
]

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
# Bounded by rules.MAX_EPOCH (2**48): see docs/security.md. The register call
# takes any non-negative integer so that one above the bound is refused (and
# reported) as a forgery by the fencing gate rather than only by the schema.
Epoch = Annotated[int, Field(ge=0, le=MAX_EPOCH)]
LeaderEpoch = Annotated[int, Field(ge=1, le=MAX_EPOCH)]
RegisterEpoch = Annotated[int, Field(ge=1)]
Serial = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[0-9]+$")]
Pem = Annotated[str, Field(min_length=1, max_length=20_000)]
Reason = Annotated[str, Field(min_length=1, max_length=1000)]
KeyType = Literal["rsa2048", "rsa3072", "rsa4096", "p256", "p384"]
Template = Annotated[str, Field(min_length=1, max_length=200)]
Health = Literal["healthy", "warning", "unhealthy"]
RequestState = Literal["pending", "in_flight", "issued", "delivered", "installed", "failed"]
RevocationState = Literal["pending", "done"]
ScopeName = Literal["device", "user"]
Usage = Literal["current", "decrypt-only"]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Self:
        """The model from a DB row whose columns carry the fields' names."""
        return cls(**{name: row[name] for name in cls.model_fields})


class ErrorOut(BaseModel):
    """Every refusal: ``detail`` says why; fencing refusals add ``highest_epoch``."""

    detail: Any
    highest_epoch: int | None = None
    forgery_suspected: bool | None = None  # a register refused as a suspected forgery
    retry_after_s: float | None = None  # also as Retry-After (429)
    connector_revoked: bool | None = None  # 403: the calling connector was revoked


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the refusals a route can answer with."""
    text = {
        400: "Refused input the schema cannot express (a PFX that does not match its"
        " intent, an event n/a in this mode) or a call in the wrong state",
        401: "Credential missing or wrong: the admin bearer token, or a client"
        " certificate (mutual TLS) on the connector and device APIs",
        403: "Connector revoked by an admin, client certificate refused or its name"
        " does not match the call, key recovery on a service without an admin credential",
        404: "Unknown id",
        409: "Stale epoch (connector API), duplicate id (admin API), unusable stored PFX",
        413: "Request body too large",
        428: "Epoch not registered: register first",
        429: "Register beyond the epoch-advance budget (suspected forgery): retry after"
        " Retry-After seconds, or an admin accepts the epoch; key recovery beyond its"
        " rate limit",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}


# -- admin ------------------------------------------------------------------


class ProfileIn(Strict):
    id: Id
    key_type: KeyType = "rsa2048"
    template: Template = "user-auth"
    validity_days: int = Field(default=365, ge=1, le=3650)
    renewal_threshold_percent: int = Field(default=20, ge=1, le=99)
    subject_template: Template = "CN={{UserName}}"
    san_templates: list[Template] = Field(default_factory=list, max_length=10)
    # device: one certificate per device (the seed's default); user: one per user,
    # shared by all of the user's devices (S/MIME). Fixed once the profile exists.
    scope: Literal["device", "user"] = "device"
    # ca: the connector requests certificates from the profile's template; imported:
    # an admin imports each user's PFX (scope user only; never sent to a CA).
    source: Literal["ca", "imported"] = "ca"


class ProfileUpdate(Strict):
    key_type: KeyType | None = None
    template: Template | None = None
    validity_days: int | None = Field(default=None, ge=1, le=3650)
    renewal_threshold_percent: int | None = Field(default=None, ge=1, le=99)
    subject_template: Template | None = None
    san_templates: list[Template] | None = Field(default=None, max_length=10)


class ProfileOut(ProfileIn):
    pass


class UserIn(Strict):
    id: Id
    name: Name
    upn: Name
    email: Name


class UserUpdate(Strict):
    name: Name | None = None
    upn: Name | None = None
    email: Name | None = None


class UserOut(UserIn):
    state: str


class GroupIn(Strict):
    id: Id
    name: Name


class MembershipIn(Strict):
    user_id: Id


class DeviceIn(Strict):
    id: Id
    user_id: Id
    # Optional: the device's own RSA public key; without it the service makes
    # the key pair and returns the private key once.
    public_key_pem: Pem | None = None


class DeviceOut(Strict):
    id: str
    user_id: str
    state: str
    management_certificate_pem: str
    management_key_pem: str | None = None


class AssignmentIn(Strict):
    id: Id
    profile_id: Id
    group_id: Id


class ModeIn(Strict):
    mode: Literal["hybrid", "standalone"]


class RenewalScanIn(Strict):
    # Evaluate the threshold as of this instant (a lab clock); default now.
    as_of: Annotated[dt.datetime, Field(strict=False)] | None = None


class ActionResult(Strict):
    event: str
    mode: str
    revocations_queued: int
    deletions_queued: int
    requests_cancelled: int
    requests_queued: int = 0
    # User-scoped certificates re-issued because a device's copy of the key left
    # our control (admin retire, block, delete).
    rollovers_queued: int = 0


class Queued(Strict):
    requests_queued: int


# -- connector --------------------------------------------------------------


class ConnectorCall(Strict):
    name: Id
    epoch: LeaderEpoch


class RegisterIn(Strict):
    name: Id
    # Any integer >= 1 parses; above rules.MAX_EPOCH the gate refuses it (422) and
    # reports a suspected forgery naming the connector.
    epoch: RegisterEpoch
    # A takeover's first poll rides on the registration (0: none): as /requests/poll
    # with wait_s 0, under the epoch just registered.
    max_items: int = Field(default=0, ge=0, le=500)


class HeartbeatIn(Strict):
    name: Id
    epoch: Epoch  # 0: a standby's heartbeat, fences nothing
    health: Health
    details: dict[str, Any] = Field(default_factory=dict, max_length=50)


class RoleOut(Strict):
    name: str
    role: Literal["active", "standby"]
    epoch: int


class PollIn(ConnectorCall):
    max_items: int = Field(default=100, ge=1, le=500)
    wait_s: float = Field(default=0.0, ge=0.0, le=30.0)


class IntentIn(ConnectorCall):
    public_key_pem: Pem


class ResultIn(ConnectorCall):
    envelope_b64: str = Field(min_length=1, max_length=400_000)
    serial: Serial
    ca_name: Id


class IntentItem(Strict):
    request_id: Id
    public_key_pem: Pem


class IntentsIn(ConnectorCall):
    """Intents of several requests in one call: one fence check, one commit."""

    items: list[IntentItem] = Field(min_length=1, max_length=500)


class ResultItem(Strict):
    request_id: Id
    envelope_b64: str = Field(min_length=1, max_length=400_000)
    serial: Serial
    ca_name: Id


class ResultsIn(ConnectorCall):
    """Results of several requests in one call (the body limit still applies)."""

    items: list[ResultItem] = Field(min_length=1, max_length=500)


class ItemOutcome(Strict):
    """One item of a batch: ``state`` when it was accepted, ``status`` + ``reason`` when not."""

    id: str
    state: str | None = None
    status: int | None = None
    reason: str | None = None


class BatchAck(Strict):
    items: list[ItemOutcome]


class FailIn(ConnectorCall):
    reason: Reason
    retryable: bool


class ProfileSpecOut(Strict):
    id: str
    key_type: str
    template: str
    subject_template: str
    san_templates: list[str]
    validity_days: int


class CertificateRequestOut(Strict):
    id: str
    # The subject the certificate names (its subject serialNumber): the device id,
    # or for scope "user" the user id.
    device_id: str
    kind: str
    profile: ProfileSpecOut
    variables: dict[str, str]
    scope: Literal["device", "user"] = "device"
    user_id: str | None = None


class RequestBatch(Strict):
    requests: list[CertificateRequestOut]


class RevocationTaskOut(Strict):
    id: str
    serial: str
    ca_name: str
    reason: str
    request_id: str


class RevocationBatch(Strict):
    revocations: list[RevocationTaskOut]


class IntentOut(Strict):
    request_id: str
    epoch: int
    public_key_pem: str
    spki_sha256: str
    cancelled: bool


class IntentList(Strict):
    intents: list[IntentOut]


class RegisterOut(RoleOut):
    """A registration's answer: the role, and what a takeover reads first (one round trip).

    ``intents`` as /intents/stale, ``requests`` as /requests/poll (``max_items`` of them).
    """

    intents: list[IntentOut] = Field(default_factory=list)
    requests: list[CertificateRequestOut] = Field(default_factory=list)


class KraOut(Strict):
    certificate_pem: str


class Ack(Strict):
    id: str
    state: str


# -- device -----------------------------------------------------------------


class Delivery(Strict):
    request_id: str  # what the device reports on (for scope "user": its copy's id)
    profile_id: str
    serial: str
    envelope_b64: str  # CMS EnvelopedData to the device's management certificate
    scope: ScopeName = "device"
    # current: use it; decrypt-only: an older key of the user, kept to open old mail
    usage: Usage = "current"


class Deletion(Strict):
    request_id: str
    profile_id: str
    serial: str
    scope: ScopeName = "device"


class CheckinOut(Strict):
    device_id: str
    state: str
    deliveries: list[Delivery]
    deletions: list[Deletion]


class ReportIn(Strict):
    request_id: Id
    status: Literal["installed", "failed", "deleted"]
    reason: Reason | None = None


# -- read -------------------------------------------------------------------


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


# -- admin actions (one per row of the seed's revocation table) ---------------


class DeviceAction(Strict):
    device_id: Id


class UserAction(Strict):
    user_id: Id


class LeaveGroupAction(Strict):
    group_id: Id
    user_id: Id


class ProfileAction(Strict):
    profile_id: Id


class AssignmentAction(Strict):
    assignment_id: Id


class GroupOut(GroupIn):
    members: list[str]


class AssignmentOut(AssignmentIn):
    requests_queued: int = 0


class MembershipOut(Strict):
    group_id: str
    user_id: str
    requests_queued: int


class ConnectorRevokeIn(Strict):
    reason: Reason = "revoked by an admin"


class AcceptEpochIn(Strict):
    epoch: LeaderEpoch
    reason: Reason = "accepted by an admin"


class EpochAccepted(Strict):
    name: str
    epoch: int
    highest_epoch: int


class ConnectorRevoked(Strict):
    name: str
    revoked_at: str
    reason: str


class ModeOut(Strict):
    mode: str


# -- enrollment (issue 8) -------------------------------------------------------


class EnrollmentTokenIn(Strict):
    ttl_s: int = Field(default=600, ge=10, le=86_400)


class EnrollmentTokenOut(Strict):
    name: str
    token: str
    expires_at: str


class EnrollIn(Strict):
    token: str = Field(min_length=16, max_length=200)
    csr_pem: str = Field(min_length=1, max_length=20_000)


class RenewIn(Strict):
    name: Id
    csr_pem: str = Field(min_length=1, max_length=20_000)


class EnrolledOut(Strict):
    name: str
    certificate_pem: str
    ca_certificate_pem: str
    not_after: str
