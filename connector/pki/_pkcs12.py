"""A password-less PKCS#12 (RFC 7292) written as DER, with a one-iteration MAC.

    der = password_less_pfx(key_pkcs8_der, cert_der, [issuing_ca_der, root_der], "pfxha")

Why not ``cryptography``'s ``serialize_key_and_certificates``: for a PFX
without a password it still derives the MAC key with 2048 iterations of its
own PKCS#12 KDF, about 1.1 ms of CPU per PFX (measured, `cryptography` 50),
and there is no setting for it. That was the largest single cost a leader paid
per certificate beyond its key (docs/connector.md). ``asn1crypto`` builds the
same structure in ~1.5 ms of pure Python. So this module writes the few DER
shapes a PFX needs itself; the tests check every byte of the authenticated
content against ``cryptography``'s own output and open the result with
OpenSSL, ``cryptography`` and ``asn1crypto``.

The layout is ``cryptography``'s, byte for byte inside the MAC: one unencrypted
``data`` safe holding the certificate bag (friendlyName, localKeyId = SHA-1 of
the certificate), one bag per chain certificate, then the key bag (PKCS#8,
same attributes). Only the MAC differs: HMAC-SHA256 under a key derived with
one iteration (iterations is DEFAULT 1, so DER leaves it out; OpenSSL writes
the same with ``-nomaciter``). With an empty password the MAC authenticates
nothing whatever its iteration count (anyone can compute it); the PFX is only
ever stored or sent inside the KRA envelope, which is its protection.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

__all__ = ["MAC_SALT_BYTES", "password_less_pfx"]

MAC_SALT_BYTES = 8  # what cryptography and OpenSSL use

# DER of the object identifiers a PFX needs (tag, length and value).
_OID_DATA = bytes.fromhex("06092a864886f70d010701")  # 1.2.840.113549.1.7.1 pkcs7-data
_OID_KEY_BAG = bytes.fromhex("060b2a864886f70d010c0a0101")  # 1.2.840.113549.1.12.10.1.1
_OID_CERT_BAG = bytes.fromhex("060b2a864886f70d010c0a0103")  # 1.2.840.113549.1.12.10.1.3
_OID_X509_CERT = bytes.fromhex("060a2a864886f70d01091601")  # 1.2.840.113549.1.9.22.1
_OID_FRIENDLY_NAME = bytes.fromhex("06092a864886f70d010914")  # 1.2.840.113549.1.9.20
_OID_LOCAL_KEY_ID = bytes.fromhex("06092a864886f70d010915")  # 1.2.840.113549.1.9.21
_SHA256_ALGORITHM = bytes.fromhex("300d06096086480165030402010500")  # sha256, NULL params
_VERSION_3 = bytes.fromhex("020103")

_SEQUENCE, _SET, _OCTET_STRING, _BMP_STRING, _EXPLICIT_0 = 0x30, 0x31, 0x04, 0x1E, 0xA0

# The PKCS#12 KDF for SHA-256 (RFC 7292 appendix B.2): 64-byte blocks, ID 3 = MAC key.
_BLOCK = 64
_MAC_KEY_ID = 3
# An empty password is the empty BMPString with its two-byte terminator (what
# OpenSSL and cryptography hash for a password-less PFX).
_EMPTY_PASSWORD = b"\x00\x00"


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _attributes(friendly_name: bytes, local_key_id: bytes) -> bytes:
    name = _der(_SEQUENCE, _OID_FRIENDLY_NAME + _der(_SET, friendly_name))
    key_id = _der(_SEQUENCE, _OID_LOCAL_KEY_ID + _der(_SET, local_key_id))
    return _der(_SET, b"".join(sorted((name, key_id))))  # DER orders a SET OF


def _cert_bag(cert_der: bytes, attributes: bytes = b"") -> bytes:
    cert_bag = _der(_SEQUENCE, _OID_X509_CERT + _der(_EXPLICIT_0, _der(_OCTET_STRING, cert_der)))
    return _der(_SEQUENCE, _OID_CERT_BAG + _der(_EXPLICIT_0, cert_bag) + attributes)


def _mac_key(salt: bytes) -> bytes:
    """RFC 7292 B.2 with one iteration: one SHA-256 output is the whole 32-byte key."""
    diversifier = bytes((_MAC_KEY_ID,)) * _BLOCK
    salt_block = (salt * (_BLOCK // len(salt) + 1))[:_BLOCK]
    password_block = (_EMPTY_PASSWORD * (_BLOCK // len(_EMPTY_PASSWORD)))[:_BLOCK]
    return hashlib.sha256(diversifier + salt_block + password_block).digest()


def password_less_pfx(
    key_pkcs8_der: bytes,
    cert_der: bytes,
    chain_ders: Sequence[bytes],
    friendly_name: str,
    *,
    salt: bytes | None = None,
) -> bytes:
    """DER PFX of an unencrypted PKCS#8 key, its certificate and chain; ``salt`` for tests."""
    salt = os.urandom(MAC_SALT_BYTES) if salt is None else salt
    if not 0 < len(salt) <= _BLOCK:
        raise ValueError("the MAC salt must be 1 to 64 bytes")
    attributes = _attributes(
        _der(_BMP_STRING, friendly_name.encode("utf-16-be")),
        _der(_OCTET_STRING, hashlib.sha1(cert_der).digest()),  # noqa: S324 - an identifier
    )
    bags = [_cert_bag(cert_der, attributes)]
    bags.extend(_cert_bag(der) for der in chain_ders)
    bags.append(_der(_SEQUENCE, _OID_KEY_BAG + _der(_EXPLICIT_0, key_pkcs8_der) + attributes))
    safe_contents = _der(_SEQUENCE, b"".join(bags))
    safe = _der(_SEQUENCE, _OID_DATA + _der(_EXPLICIT_0, _der(_OCTET_STRING, safe_contents)))
    authenticated = _der(_SEQUENCE, safe)  # AuthenticatedSafe: one data safe
    auth_safe = _der(_SEQUENCE, _OID_DATA + _der(_EXPLICIT_0, _der(_OCTET_STRING, authenticated)))
    digest = hmac.new(_mac_key(salt), authenticated, hashlib.sha256).digest()
    mac_data = _der(
        _SEQUENCE,
        _der(_SEQUENCE, _SHA256_ALGORITHM + _der(_OCTET_STRING, digest))
        + _der(_OCTET_STRING, salt),
    )
    return _der(_SEQUENCE, _VERSION_3 + auth_safe + mac_data)
