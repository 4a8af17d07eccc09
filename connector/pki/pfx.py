"""PKCS#12 (PFX) with the private key, the certificate and its chain.

    pfx = pack_pfx(key, certificate, [issuing_ca, root], friendly_name="corp-wifi")
    key, cert, chain = load_pfx(pfx)

The PFX carries no password (:data:`PFX_PASSWORD` is ``None``; ``openssl
pkcs12 -info -passin pass:`` reads it): it is never stored or sent bare, but
only inside the KRA envelope (:mod:`connector.pki.envelope`), which is the
protection, and then re-encrypted to the device. A password here would be a
shared secret with no one to keep it.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from connector.pki.keys import PrivateKey, check_key

__all__ = ["PFX_PASSWORD", "PfxError", "load_pfx", "pack_pfx"]

PFX_PASSWORD: bytes | None = None


class PfxError(ValueError):
    """A PFX could not be built or read."""


def pack_pfx(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    friendly_name: str,
) -> bytes:
    """DER PKCS#12 holding ``key``, ``cert`` (with ``friendly_name``) and ``chain``."""
    key = check_key(key)
    if cert.public_key() != key.public_key():
        raise PfxError("the certificate does not belong to the private key")
    return pkcs12.serialize_key_and_certificates(
        name=friendly_name.encode("utf-8"),
        key=key,
        cert=cert,
        cas=list(chain) or None,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_pfx(
    pfx: bytes, password: bytes | None = PFX_PASSWORD
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """Open a PFX as the device would: key, certificate, chain."""
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(pfx, password)
    except ValueError as exc:
        raise PfxError(f"cannot read PFX: {exc}") from exc
    if key is None or cert is None:
        raise PfxError("PFX lacks the private key or the certificate")
    return check_key(key), cert, list(chain)
