"""What an issuing CA offers, whatever its backend (CFSSL here; AD CS would fit).

class IssuingCA(Protocol):
    name: str
    def issue(self, csr, template, request_id, *, timeout=None) -> IssuedCertificate
    def revoke(self, serial, reason, *, timeout=None) -> None   # already revoked: OK
    def status(self, serial) -> CertStatus
    def crl(self, *, timeout=None) -> x509.CertificateRevocationList
    def find(self, public_key) -> list[IssuedCertificate]   # cannot search: CAUnavailableError
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = [
    "REVOCATION_REASONS",
    "CertStatus",
    "IssuedCertificate",
    "IssuingCA",
    "ReconcileState",
    "aki_of",
    "normalise_reason",
]


class CertStatus(enum.StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


# RFC 5280 reason names as CFSSL spells them, and their codes.
REVOCATION_REASONS: dict[str, int] = {
    "unspecified": 0,
    "keycompromise": 1,
    "cacompromise": 2,
    "affiliationchanged": 3,
    "superseded": 4,
    "cessationofoperation": 5,
    "certificatehold": 6,
    "removefromcrl": 8,
    "privilegewithdrawn": 9,
    "aacompromise": 10,
}


def normalise_reason(reason: str | x509.ReasonFlags) -> str:
    """``keyCompromise``, ``key_compromise``, ``ReasonFlags.key_compromise`` -> ``keycompromise``.

    Unknown reasons raise ``ValueError`` (the router turns it into a permanent error).
    """
    text = reason.value if isinstance(reason, x509.ReasonFlags) else str(reason)
    norm = re.sub(r"[^a-z]", "", text.lower())
    if norm not in REVOCATION_REASONS:
        raise ValueError(f"unknown revocation reason {reason!r}")
    return norm


def aki_of(certificate: x509.Certificate) -> str:
    """The authority key identifier as lower-case hex ('' when the extension is absent)."""
    try:
        ext = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return ""
    return (ext.value.key_identifier or b"").hex()


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate a CA issued, with the chain up to the root and where it came from.

    ``serial`` is the integer serial (CFSSL wants it in decimal); ``aki`` is the
    hex key identifier of the issuing CA; ``status`` is ``good`` unless found
    revoked in the CA's database. ``uncertain`` lists other CAs where an attempt
    for the same request timed out after it was sent: they may have issued too,
    so reconciliation should look there (``router.find``).
    """

    certificate: x509.Certificate
    chain: list[x509.Certificate]
    ca_name: str
    serial: int
    aki: str
    status: str = CertStatus.GOOD.value
    uncertain: tuple[str, ...] = field(default=())

    @property
    def revoked(self) -> bool:
        return self.status == CertStatus.REVOKED.value

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode("ascii")

    @classmethod
    def of(
        cls,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        ca_name: str,
        status: str = CertStatus.GOOD.value,
    ) -> IssuedCertificate:
        return cls(
            certificate=certificate,
            chain=list(chain),
            ca_name=ca_name,
            serial=certificate.serial_number,
            aki=aki_of(certificate),
            status=status,
        )


@dataclass(frozen=True)
class ReconcileState:
    """Can this CA say what it issued for a key (reconciliation), and if not, why.

    ``mode`` is ``certdb`` (read from the CA's database), ``api`` (the CA searches
    itself) or ``off`` (the operator turned reconciliation off for this CA:
    orphans of a deposed leader at this CA are never found). ``ready`` is false
    when the search cannot run now; ``detail`` says why, fit for logs.
    """

    ca: str
    mode: str
    ready: bool
    detail: str = ""


@runtime_checkable
class IssuingCA(Protocol):
    """One issuing CA. Errors are :class:`connector.ca.CAError` subclasses."""

    @property
    def name(self) -> str: ...

    @property
    def certificate(self) -> x509.Certificate:
        """The issuing CA's own certificate (to route revocations by issuer)."""
        ...

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        template: str,
        request_id: str,
        *,
        timeout: float | None = None,
    ) -> IssuedCertificate: ...

    def revoke(self, serial: int, reason: str, *, timeout: float | None = None) -> None: ...

    def status(self, serial: int) -> CertStatus: ...

    def crl(self, *, timeout: float | None = None) -> x509.CertificateRevocationList: ...

    def find(self, public_key: PublicKeyTypes) -> list[IssuedCertificate]: ...
