"""Checking a connector's upload before anything is stored (seed steps 5-6).

    result = check_upload(keys, envelope_b64, serial)   # or raises ApiError(400)
    result.spki_sha256, result.device_ids, result.certificate, result.envelope

The envelope must open with the KRA key and hold a password-less PKCS#12
whose private key belongs to its certificate, with the declared serial. The
caller then compares ``spki_sha256`` with the recorded intent and
``device_ids`` (subject serialNumber) with the request's device. All of it is
pure CPU work, done before the write lock is taken.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from chaos.service.keys import ServiceKeys, certificate_fingerprint
from chaos.service.store import ApiError
from connector.pki.envelope import EnvelopeError
from connector.pki.pfx import PfxError, read_pfx

__all__ = ["CheckedUpload", "check_upload"]


@dataclass(frozen=True)
class CheckedUpload:
    envelope: bytes  # stored as received: still sealed to the KRA
    certificate: x509.Certificate
    spki_sha256: str
    device_ids: tuple[str, ...]


def check_upload(keys: ServiceKeys, envelope_b64: str, serial: str) -> CheckedUpload:
    try:
        envelope = base64.b64decode(envelope_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"envelope_b64 is not base64: {exc}") from exc
    try:
        pfx = keys.open_from_connector(envelope)
    except EnvelopeError as exc:
        raise ApiError(400, f"envelope does not open with the KRA key: {exc}") from exc
    cert = _certificate_from_pfx(pfx)
    if str(cert.serial_number) != serial:
        raise ApiError(400, f"serial {serial} is not the certificate's serial")
    device_ids = tuple(
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    )
    return CheckedUpload(envelope, cert, certificate_fingerprint(cert), device_ids)


def _certificate_from_pfx(pfx: bytes) -> x509.Certificate:
    try:
        # read_pfx proves the key works for the certificate without OpenSSL's RSA
        # prime check (about 30 ms of CPU per upload, the flow's bottleneck).
        _key, cert, _chain = read_pfx(pfx)
    except PfxError as exc:
        raise ApiError(
            400, f"the envelope does not hold a usable password-less PKCS#12: {exc}"
        ) from exc
    return cert
