"""Bodies of the connector API: register, heartbeat, poll, intents, results, failures,
revocations, and what a takeover reads first.

    from chaos.service import models as m

    @router.post("/requests/poll", response_model=m.RequestBatch)
    def poll_requests(body: m.PollIn) -> m.RequestBatch: ...

Every call past register carries the connector's name and epoch
(:class:`ConnectorCall`): the fencing gate checks them before any handler runs.
Importers use :mod:`chaos.service.models`, which re-exports every body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from chaos.service._model_base import (
    Epoch,
    Health,
    Id,
    LeaderEpoch,
    Pem,
    Reason,
    RegisterEpoch,
    Serial,
    Strict,
)

__all__ = [
    "Ack",
    "BatchAck",
    "CertificateRequestOut",
    "ConnectorCall",
    "FailIn",
    "HeartbeatIn",
    "IntentIn",
    "IntentItem",
    "IntentList",
    "IntentOut",
    "IntentsIn",
    "ItemOutcome",
    "KraOut",
    "PollIn",
    "ProfileSpecOut",
    "RegisterIn",
    "RegisterOut",
    "RequestBatch",
    "ResultIn",
    "ResultItem",
    "ResultsIn",
    "RevocationBatch",
    "RevocationTaskOut",
    "RoleOut",
    "SupersededOut",
    "UncertainOut",
]


class ConnectorCall(Strict):
    name: Id
    epoch: LeaderEpoch


class RegisterIn(Strict):
    name: Id
    # Any integer >= 1 parses; above rules.MAX_EPOCH the gate refuses it (422) and
    # reports a suspected forgery naming the connector.
    epoch: RegisterEpoch
    # A takeover's first poll rides on the registration (0: none): as /requests/poll
    # with wait_s 0, under the epoch just registered, ``received`` included.
    max_items: int = Field(default=0, ge=0, le=500)
    received: int | None = Field(default=None, ge=0)
    # Keys of intents given up on in this many seconds come back (0: none), and of
    # uncertain deliveries as long ago: the new leader watches them for late certificates.
    superseded_within_s: float = Field(default=0.0, ge=0.0, le=600.0)


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
    # The lease sequence of the last answer this epoch received (None: say nothing).
    # What a later answer leased to it is taken again: that answer never arrived.
    received: int | None = Field(default=None, ge=0)


class IntentIn(ConnectorCall):
    public_key_pem: Pem


class ResultIn(ConnectorCall):
    envelope_b64: str = Field(min_length=1, max_length=400_000)
    serial: Serial
    ca_name: Id
    # Another CA may also have signed this key (its answer was lost): a new leader is
    # told the key for the late-certificate window, the delivered certificate kept.
    uncertain: bool = False


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
    uncertain: bool = False  # as ResultIn's


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
    # Revocation tasks pending when the batch was taken (same transaction): a
    # leader told 0 need not poll revocations separately (one call fewer).
    revocations_waiting: int = 0
    # This answer's lease sequence (None: it holds no request); the next poll says it
    # received it, or the requests it leased are taken again.
    lease_seq: int | None = None


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


class SupersededOut(Strict):
    """An intent no longer its request's current one, recorded ``age_s`` seconds ago."""

    request_id: str
    epoch: int
    public_key_pem: str
    age_s: float


class UncertainOut(Strict):
    """A key delivered (``ca_name``, ``serial``) after another CA's answer for it was lost,
    its intent recorded ``age_s`` seconds ago: that CA may still sign it late."""

    request_id: str
    epoch: int
    public_key_pem: str
    age_s: float
    ca_name: str
    serial: Serial


class IntentList(Strict):
    intents: list[IntentOut]


class RegisterOut(RoleOut):
    """A registration's answer: the role, and what a takeover reads first (one round trip).

    ``intents`` as /intents/stale, ``requests`` as /requests/poll (``max_items`` of them).
    """

    intents: list[IntentOut] = Field(default_factory=list)
    requests: list[CertificateRequestOut] = Field(default_factory=list)
    lease_seq: int | None = None  # as /requests/poll's
    superseded: list[SupersededOut] = Field(default_factory=list)
    # Delivered keys another CA may also sign late, in the same window.
    uncertain: list[UncertainOut] = Field(default_factory=list)


class KraOut(Strict):
    certificate_pem: str


class Ack(Strict):
    id: str
    state: str
