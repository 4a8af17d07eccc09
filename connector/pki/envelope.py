"""CMS EnvelopedData (AES-256-CBC, RSA key transport) around a PFX.

The connector seals the PFX to the service's KRA certificate; the service
opens it with the KRA key and seals it again to the device's management
certificate; the device opens it with its management key::

    blob = seal(pfx_der, kra_certificate)
    pfx_der = open_envelope(blob, kra_certificate, kra_private_key)

Output is DER, readable by ``openssl cms -decrypt -inform DER``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

__all__ = ["EnvelopeError", "open_envelope", "seal"]


class EnvelopeError(ValueError):
    """The envelope could not be built or opened (wrong recipient, garbage bytes)."""


def seal(content: bytes, recipient: x509.Certificate) -> bytes:
    """Encrypt ``content`` to ``recipient`` (an RSA certificate) as DER CMS EnvelopedData."""
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise EnvelopeError("envelope recipients must hold RSA keys (CMS key transport)")
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(content)
        .set_content_encryption_algorithm(algorithms.AES256)
        .add_recipient(recipient)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


def open_envelope(
    blob: bytes, recipient: x509.Certificate, private_key: rsa.RSAPrivateKey
) -> bytes:
    """Decrypt a DER CMS EnvelopedData addressed to ``recipient``."""
    try:
        return pkcs7.pkcs7_decrypt_der(blob, recipient, private_key, [])
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise EnvelopeError(f"cannot open envelope: {exc}") from exc
