"""What the checkers read: plain, immutable records of the system's state.

The drill fills these from the stand-in service's read API, each CA's certdb
and CRL, and the history; the checkers are pure functions over them, so a
test can plant a violation by building the records by hand.

Serial numbers are decimal strings everywhere (CFSSL's certdb and its revoke
API use decimal), CA names are the lab's names (``primary``, ``secondary``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AcceptedAction",
    "CaCertificate",
    "DeliveredCertificate",
    "Intent",
    "RequestRecord",
    "Revocation",
    "Snapshot",
    "UserCertificate",
    "UserCopy",
    "UserScopeState",
]


@dataclass(frozen=True)
class RequestRecord:
    """A certificate request as the service holds it."""

    id: str
    device: str
    profile: str
    state: str
    reason: str | None = None


@dataclass(frozen=True)
class DeliveredCertificate:
    """A certificate the service accepted from a connector and delivers to a device."""

    request: str
    serial: str
    issuer: str
    device: str = ""
    profile: str = ""
    epoch: int = 0


@dataclass(frozen=True)
class Intent:
    """The leader's record, before calling a CA, of what it is about to issue."""

    request: str
    epoch: int
    public_key_sha256: str


@dataclass(frozen=True)
class CaCertificate:
    """One row of an issuing CA's certdb."""

    ca: str
    serial: str
    revoked: bool
    public_key_sha256: str = ""
    reason: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Revocation:
    """A revocation the service asked a connector to carry out."""

    id: str
    serial: str
    issuer: str
    state: str
    request: str | None = None


@dataclass(frozen=True)
class AcceptedAction:
    """A side effect the service accepted, in the order it accepted them.

    ``kind`` is e.g. ``register``, ``intent``, ``upload``, ``revoke-confirm``;
    ``seq`` is the service's own ordering (a row id or acceptance counter).
    """

    seq: int
    kind: str
    connector: str
    epoch: int


@dataclass(frozen=True)
class UserCertificate:
    """A user-scoped request the service accepted a certificate for."""

    request: str
    user: str
    profile: str
    serial: str
    issuer: str
    escrow: str  # current | history | withdrawn
    revoked: bool  # the service queued its revocation
    kind: str = "new"  # new | rollover | renewal
    replaces: str | None = None
    state: str = "issued"


@dataclass(frozen=True)
class UserCopy:
    """One device's copy of a user-scoped certificate."""

    device: str
    request: str
    usage: str  # current | decrypt-only
    state: str  # ready | delivered | installed | failed | withdrawn
    device_delete: str | None = None  # pending | done


@dataclass(frozen=True)
class UserScopeState:
    certificates: tuple[UserCertificate, ...] = ()
    copies: tuple[UserCopy, ...] = ()
    devices: dict[str, str] = field(default_factory=dict)  # active device -> its user
    targeted: frozenset[tuple[str, str]] = frozenset()  # (user, profile) a profile targets now


@dataclass(frozen=True)
class Snapshot:
    """Everything the checkers need from outside the history."""

    requests: tuple[RequestRecord, ...] = ()
    delivered: tuple[DeliveredCertificate, ...] = ()
    intents: tuple[Intent, ...] = ()
    ca_certificates: tuple[CaCertificate, ...] = ()
    revocations: tuple[Revocation, ...] = ()
    crls: dict[str, frozenset[str]] = field(default_factory=dict)
    accepted: tuple[AcceptedAction, ...] = ()
    users: UserScopeState = field(default_factory=lambda: UserScopeState())
