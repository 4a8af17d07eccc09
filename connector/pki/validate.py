"""Checks on what a CA returned, before anything is packed into a PFX.

    cert = validate_issued(pem_or_der, csr, chain=[issuing_ca, root],
                           required_ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])

Rejects (with :class:`CertificateValidationError` saying which rule failed):
garbage bytes; a certificate for another key than the CSR's; a wrong issuer
or a bad signature; a chain that does not link up to its last element (the
root, self-signed); a certificate outside its validity window; a CA
certificate; missing extended key usages; a subject that lost the CSR's
common name or device ID (serialNumber).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = ["CertificateValidationError", "parse_certificate", "validate_chain", "validate_issued"]

CLOCK_SKEW = dt.timedelta(minutes=5)


class CertificateValidationError(ValueError):
    """The CA's answer is not a certificate we may deliver; the message names the rule."""


def parse_certificate(data: bytes | str | x509.Certificate) -> x509.Certificate:
    """PEM or DER bytes (or text) to a certificate; anything else is a validation error."""
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except (ValueError, x509.InvalidVersion) as exc:
        # InvalidVersion is no ValueError: a version field other than v1/v3 (fuzzing found it).
        raise CertificateValidationError(f"not a certificate: {exc}") from exc


def _signed_by(child: x509.Certificate, parent: x509.Certificate, what: str) -> None:
    # verify_directly_issued_by also checks child.issuer == parent.subject (ValueError);
    # the names are only decoded to explain a failure: decoding them costs more than
    # the signature check on the hot path.
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError) as exc:
        if child.issuer != parent.subject:
            raise CertificateValidationError(
                f"{what}: issuer {child.issuer.rfc4514_string()!r} is not "
                f"{parent.subject.rfc4514_string()!r}"
            ) from exc
        raise CertificateValidationError(f"{what}: signature does not verify: {exc}") from exc


def validate_chain(chain: Sequence[x509.Certificate]) -> None:
    """``chain`` is [issuing CA, ..., root]: each signed by the next, the root by itself."""
    if not chain:
        raise CertificateValidationError("empty chain")
    for i, (child, parent) in enumerate(itertools.pairwise(chain)):
        _signed_by(child, parent, f"chain[{i}]")
    _signed_by(chain[-1], chain[-1], "chain root")


def _values(name: x509.Name, oid: ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def validate_issued(
    data: bytes | str | x509.Certificate,
    csr: x509.CertificateSigningRequest,
    chain: Sequence[x509.Certificate],
    *,
    required_ekus: Sequence[ObjectIdentifier] = (),
    now: dt.datetime | None = None,
    chain_verified: bool = False,
) -> x509.Certificate:
    """The parsed certificate if it is what ``csr`` asked for, issued by ``chain[0]``.

    ``chain_verified=True`` skips re-checking ``chain`` itself (a client that
    validated its configured chain once at start-up).
    """
    cert = parse_certificate(data)
    if cert.public_key() != csr.public_key():
        raise CertificateValidationError("certificate does not match the CSR's public key")
    if not chain:
        raise CertificateValidationError("no issuing CA certificate to check against")
    _signed_by(cert, chain[0], "certificate")
    if not chain_verified:
        validate_chain(chain)
    now = now or dt.datetime.now(dt.UTC)
    if not (cert.not_valid_before_utc - CLOCK_SKEW <= now <= cert.not_valid_after_utc):
        raise CertificateValidationError(
            f"certificate is not valid now ({cert.not_valid_before_utc} .. "
            f"{cert.not_valid_after_utc})"
        )
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise CertificateValidationError("the CA issued a CA certificate")
    except x509.ExtensionNotFound:
        pass
    if required_ekus:
        try:
            ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            ekus = set()
        missing = [oid.dotted_string for oid in required_ekus if oid not in ekus]
        if missing:
            raise CertificateValidationError(
                f"certificate lacks extended key usage {', '.join(missing)}"
            )
    requested, issued = csr.subject, cert.subject
    for oid, label in ((NameOID.COMMON_NAME, "common name"), (NameOID.SERIAL_NUMBER, "device id")):
        wanted = _values(requested, oid)
        if wanted and _values(issued, oid) != wanted:
            raise CertificateValidationError(
                f"certificate subject lost the {label} {wanted!r} of the request"
            )
    return cert
