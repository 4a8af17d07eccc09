"""PKCS#12 (PFX) with the private key, the certificate and its chain.

    pfx = pack_pfx(key, certificate, [issuing_ca, root], friendly_name="corp-wifi")
    key, cert, chain = load_pfx(pfx)      # as a device opens it (OpenSSL, every check)
    key, cert, chain = read_pfx(pfx)      # the service's upload check: ~30x cheaper

The PFX carries no password (:data:`PFX_PASSWORD` is ``None``; ``openssl
pkcs12 -info -passin pass:`` reads it) and its MAC key takes one iteration
(:mod:`connector.pki._pkcs12`): it is never stored or sent bare, but only
inside the KRA envelope (:mod:`connector.pki.envelope`), which is the
protection, and then re-encrypted to the device. A password here would be a
shared secret with no one to keep it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from connector.pki._pkcs12 import password_less_pfx
from connector.pki.keys import PrivateKey, check_key

__all__ = ["PFX_PASSWORD", "PfxError", "load_pfx", "pack_pfx", "read_pfx"]

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
    # Not pkcs12.serialize_key_and_certificates: its fixed 2048-round MAC costs
    # ~1.1 ms per PFX for a password that protects nothing (connector/pki/_pkcs12.py).
    return password_less_pfx(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.DER),
        [c.public_bytes(serialization.Encoding.DER) for c in chain],
        friendly_name,
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


def read_pfx(pfx: bytes) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """Read a password-less PFX without OpenSSL's RSA key check; prove the key instead.

    ``load_pfx`` makes OpenSSL check the RSA key's primes, about 30 ms of CPU per
    2048-bit key with the GIL held: the stand-in service paid it on every upload,
    which made it the bottleneck of the whole flow. What the service must know is
    that the private key *works* for the certificate's public key, so this reads
    the bags with asn1crypto, loads the key unchecked, and checks its numbers
    agree with the public key (microseconds). The empty-password MAC is not
    checked: it authenticates nothing. Encrypted bags (a PFX made elsewhere, with
    a password) fall back to :func:`load_pfx`.
    """
    try:
        parsed = asn1_pkcs12.Pfx.load(pfx, strict=True)
        if parsed["auth_safe"]["content_type"].native != "data":
            return load_pfx(pfx)
        key_der: bytes | None = None
        cert_ders: list[bytes] = []
        for info in parsed.authenticated_safe:
            if info["content_type"].native != "data":
                return load_pfx(pfx)  # encrypted bags: only OpenSSL with a password
            for bag in asn1_pkcs12.SafeContents.load(info["content"].native):
                kind = bag["bag_id"].native
                if kind == "key_bag":
                    key_der = bag["bag_value"].untag().dump()
                elif kind == "cert_bag":
                    cert_ders.append(bag["bag_value"]["cert_value"].parsed.dump())
                elif kind == "pkcs8_shrouded_key_bag":
                    return load_pfx(pfx)
    except (ValueError, TypeError, KeyError) as exc:
        raise PfxError(f"cannot read PFX: {exc}") from exc
    if key_der is None or not cert_ders:
        raise PfxError("PFX lacks the private key or the certificate")
    try:
        raw_key = serialization.load_der_private_key(
            key_der, None, unsafe_skip_rsa_key_validation=True
        )
        certs = [x509.load_der_x509_certificate(der) for der in cert_ders]
        key = check_key(raw_key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PfxError(f"cannot read PFX: {exc}") from exc
    mine = [c for c in certs if c.public_key() == key.public_key()]
    if not mine:
        raise PfxError("the PFX's certificate does not belong to its private key")
    _prove_key(key)
    cert = mine[0]
    return key, cert, [c for c in certs if c is not cert]


def _prove_key(key: PrivateKey) -> None:
    """Check the private key is consistent with its public key, with arithmetic only.

    RSA: ``p*q == n``, ``d*e == 1 mod lcm(p-1, q-1)`` and the CRT values agree
    with ``d``, ``p`` and ``q`` (microseconds, unlike a private-key operation).
    EC: the private scalar times the generator is the public point. Primality is
    what this leaves out: the connector generated the key, and a key with
    composite "primes" would hurt only the device it was made for.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        public = numbers.public_numbers
        p, q, d = numbers.p, numbers.q, numbers.d
        lam = math.lcm(p - 1, q - 1)
        consistent = (
            p > 1
            and q > 1
            and p * q == public.n
            and (d * public.e) % lam == 1
            and numbers.dmp1 == d % (p - 1)
            and numbers.dmq1 == d % (q - 1)
            and (numbers.iqmp * q) % p == 1
        )
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value
        derived = ec.derive_private_key(scalar, key.curve).public_key()
        consistent = derived == key.public_key()
    else:  # pragma: no cover - check_key admits only RSA and EC
        consistent = False
    if not consistent:
        raise PfxError("the PFX's private key does not work for its public key")
