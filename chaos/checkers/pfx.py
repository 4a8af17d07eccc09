"""A delivered PFX opens on the device and chains to the lab root.

The device-side check runs in the workload the moment a device receives its
PFX (the device key never leaves the workload, so it is never written to the
history); the result lands in the history and :func:`check_pfx_history`
reports the failures.

    problems = verify_delivered_pfx(
        blob, device_cert, device_key, root, device_id="d-17", password=None
    )
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from chaos.checkers.ops import CHECKIN
from chaos.history import Event
from connector.pki.envelope import EnvelopeError, open_envelope

__all__ = ["check_pfx_history", "verify_chain", "verify_delivered_pfx"]


def _public_der(cert_or_key: x509.Certificate | object) -> bytes:
    key = cert_or_key.public_key() if isinstance(cert_or_key, x509.Certificate) else cert_or_key
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    root: x509.Certificate,
    *,
    now: datetime.datetime | None = None,
) -> list[str]:
    """Walk leaf -> intermediates -> root by issuer name, checking each signature."""
    moment = now or datetime.datetime.now(datetime.UTC)
    problems: list[str] = []
    pool = [c for c in intermediates if c != leaf]
    current = leaf
    for _ in range(len(pool) + 1):
        if not current.not_valid_before_utc <= moment <= current.not_valid_after_utc:
            problems.append(f"certificate {current.subject.rfc4514_string()} is not valid now")
        if current.issuer == root.subject:
            try:
                current.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature) as exc:
                problems.append(f"{current.subject.rfc4514_string()} not signed by root: {exc}")
            return problems
        parent = next((c for c in pool if c.subject == current.issuer), None)
        if parent is None:
            problems.append(f"chain broken: no issuer {current.issuer.rfc4514_string()} in the PFX")
            return problems
        try:
            current.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            problems.append(f"{current.subject.rfc4514_string()} bad signature: {exc}")
            return problems
        pool.remove(parent)
        current = parent
    problems.append("chain does not reach the root")
    return problems


def verify_delivered_pfx(
    blob: bytes,
    device_cert: x509.Certificate,
    device_key: rsa.RSAPrivateKey,
    root: x509.Certificate,
    *,
    device_id: str | None = None,
    password: bytes | None = None,
    extra_intermediates: Sequence[x509.Certificate] = (),
) -> list[str]:
    """Open the sealed PFX as the device would; return what is wrong (empty if fine)."""
    try:
        pfx_der = open_envelope(blob, device_cert, device_key)
    except EnvelopeError as exc:
        return [f"PFX envelope does not open with the device key: {exc}"]
    try:
        bundle = pkcs12.load_pkcs12(pfx_der, password)
    except ValueError as exc:
        return [f"PFX does not parse: {exc}"]
    if bundle.cert is None or bundle.key is None:
        return ["PFX lacks its certificate or private key"]
    leaf = bundle.cert.certificate
    problems: list[str] = []
    if _public_der(bundle.key.public_key()) != _public_der(leaf):
        problems.append("PFX private key does not match its certificate")
    if device_id is not None:
        serials = leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        if device_id not in {str(a.value) for a in serials}:
            problems.append(f"certificate subject does not name device {device_id}")
    chain = [c.certificate for c in bundle.additional_certs] + list(extra_intermediates)
    problems.extend(verify_chain(leaf, chain, root))
    return problems


def check_pfx_history(events: Iterable[Event]) -> list[str]:
    violations: list[str] = []
    for event in events:
        if event.f != CHECKIN or event.type != "ok" or not isinstance(event.value, dict):
            continue
        for item in event.value.get("delivered") or []:
            if not item.get("pfx_ok", False):
                errors = "; ".join(item.get("pfx_errors") or ["unknown"])
                violations.append(
                    f"PFX for request {item.get('request')} (serial {item.get('serial')}) "
                    f"failed on device {event.value.get('device')}: {errors}"
                )
    return violations
