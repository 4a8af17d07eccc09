"""What the connector API carries: requests, results, revocations, intents (typed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CertificateRequest",
    "Intent",
    "Polled",
    "ProfileSpec",
    "Registration",
    "RevocationTask",
    "UploadItem",
    "intent_from_json",
    "request_from_json",
]


@dataclass(frozen=True)
class ProfileSpec:
    """What the certificate must look like (from the PFX profile)."""

    id: str
    key_type: str  # rsa2048 | rsa3072 | rsa4096 | p256 | p384
    template: str
    subject_template: str  # e.g. "CN={{UserName}}"
    san_templates: tuple[str, ...]
    validity_days: int


@dataclass(frozen=True)
class CertificateRequest:
    """One certificate to issue for one device under one profile."""

    id: str
    device_id: str
    profile: ProfileSpec
    variables: dict[str, str] = field(default_factory=dict)  # UserName, DeviceId, ...
    kind: str = "new"  # new | renewal


@dataclass(frozen=True)
class Polled:
    """One poll's answer: the requests taken, and how many revocations wait.

    ``revocations_waiting`` was counted in the same transaction as the take:
    0 answers "any revocations?" as a revocation poll would have (no separate
    call needed). None: the service did not say (an older service).
    """

    requests: list[CertificateRequest]
    revocations_waiting: int | None = None
    # This answer's lease sequence (None: no request, or the service did not say).
    # The next poll names it as ``received``: had this answer been lost on the way,
    # the service would lease its requests again rather than after the lease expires.
    lease_seq: int | None = None


@dataclass(frozen=True)
class UploadItem:
    """One result for :meth:`ServiceClient.upload_results`."""

    request_id: str
    envelope: bytes  # CMS EnvelopedData to the KRA, holding the PFX
    serial: int
    ca_name: str
    # Another CA may also have signed this key (its answer was lost): the service then
    # tells a new leader the key, to watch for that late certificate (:class:`Uncertain`).
    uncertain: bool = False


@dataclass(frozen=True)
class RevocationTask:
    """Revoke ``serial`` (decimal) at the CA named ``ca_name`` with ``reason`` (RFC 5280 name)."""

    id: str
    serial: int
    ca_name: str
    reason: str
    request_id: str


@dataclass(frozen=True)
class Intent:
    """An intent recorded under an older epoch whose result never arrived."""

    request_id: str
    epoch: int
    public_key_pem: str
    spki_sha256: str
    cancelled: bool  # the request was cancelled meanwhile: revoke orphans, then fail it


@dataclass(frozen=True)
class Superseded:
    """An intent given up on ``age_s`` seconds ago (its request was requeued): nobody can
    deliver a certificate for its key, and one may still turn up late."""

    request_id: str
    epoch: int
    public_key_pem: str
    age_s: float


@dataclass(frozen=True)
class Uncertain:
    """A key delivered as ``(ca_name, serial)`` after another CA's answer for it was lost,
    its intent recorded ``age_s`` seconds ago: that CA may still sign it late, and only
    the delivered certificate may stay valid."""

    request_id: str
    epoch: int
    public_key_pem: str
    age_s: float
    ca_name: str
    serial: int


@dataclass(frozen=True)
class Registration:
    """What :meth:`ServiceClient.register` read in the same round trip as it registered.

    ``intents`` as :meth:`ServiceClient.inflight_intents` would list them now (no older
    epoch can add one once this one is registered); ``requests`` a first poll;
    ``superseded`` the keys of recent intents given up on, ``uncertain`` those of
    recent uncertain deliveries.
    """

    intents: list[Intent] = field(default_factory=list)
    requests: list[CertificateRequest] = field(default_factory=list)
    lease_seq: int | None = None  # as :attr:`Polled.lease_seq`
    # Recent intents given up on (``superseded_within_s``): the new leader watches them.
    superseded: list[Superseded] = field(default_factory=list)
    # Delivered keys another CA may sign late, in the same window: watched too.
    uncertain: list[Uncertain] = field(default_factory=list)


def request_from_json(item: dict[str, Any]) -> CertificateRequest:
    profile = item["profile"]
    return CertificateRequest(
        id=str(item["id"]),
        device_id=str(item["device_id"]),
        profile=ProfileSpec(
            id=str(profile["id"]),
            key_type=str(profile["key_type"]),
            template=str(profile["template"]),
            subject_template=str(profile["subject_template"]),
            san_templates=tuple(str(s) for s in profile["san_templates"]),
            validity_days=int(profile["validity_days"]),
        ),
        variables={str(k): str(v) for k, v in item["variables"].items()},
        kind=str(item.get("kind", "new")),
    )


def intent_from_json(item: dict[str, Any]) -> Intent:
    return Intent(
        request_id=str(item["request_id"]),
        epoch=int(item["epoch"]),
        public_key_pem=str(item["public_key_pem"]),
        spki_sha256=str(item["spki_sha256"]),
        cancelled=bool(item["cancelled"]),
    )


def superseded_from_json(item: dict[str, Any]) -> Superseded:
    return Superseded(
        request_id=str(item["request_id"]),
        epoch=int(item["epoch"]),
        public_key_pem=str(item["public_key_pem"]),
        age_s=float(item["age_s"]),
    )


def uncertain_from_json(item: dict[str, Any]) -> Uncertain:
    return Uncertain(
        request_id=str(item["request_id"]),
        epoch=int(item["epoch"]),
        public_key_pem=str(item["public_key_pem"]),
        age_s=float(item["age_s"]),
        ca_name=str(item["ca_name"]),
        serial=int(item["serial"]),
    )
