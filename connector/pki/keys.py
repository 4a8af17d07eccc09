"""Key pairs per profile: RSA 2048/3072/4096 and ECDSA P-256/P-384, nothing weaker.

    key = generate_key(KeyType.RSA2048)
    KeyType.parse("RSA-2048") is KeyType.RSA2048
    key_type_of(key) is KeyType.RSA2048
    check_key(some_key)        # KeyPolicyError for RSA-1024, DSA, P-192 ...

Private keys stay in memory: this module never serialises one.
"""

from __future__ import annotations

import enum
import hashlib
from typing import TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "KeyPolicyError",
    "KeyType",
    "PrivateKey",
    "check_key",
    "generate_key",
    "key_type_of",
    "public_key_id",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Intune requires at least 2048-bit RSA; the curves are the NIST ones devices support.
MIN_RSA_BITS = 2048


class KeyPolicyError(ValueError):
    """A key type or key the connector refuses (too weak or unsupported)."""


class KeyType(enum.StrEnum):
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"
    P256 = "p256"
    P384 = "p384"

    @classmethod
    def parse(cls, text: str) -> KeyType:
        """Accept ``rsa2048``, ``RSA-2048``, ``RSA_2048``, ``P-256``, ``ecdsa-p256`` ..."""
        norm = text.strip().lower().replace("-", "").replace("_", "").replace("ecdsa", "")
        norm = {"secp256r1": "p256", "prime256v1": "p256", "secp384r1": "p384"}.get(norm, norm)
        try:
            return cls(norm)
        except ValueError:
            if norm.startswith("rsa") and norm[3:].isdigit() and int(norm[3:]) < MIN_RSA_BITS:
                raise KeyPolicyError(
                    f"key type {text!r} refused: RSA keys must be at least {MIN_RSA_BITS} bits"
                ) from None
            allowed = ", ".join(k.value for k in cls)
            raise KeyPolicyError(f"unknown key type {text!r}; allowed: {allowed}") from None

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")

    @property
    def rsa_bits(self) -> int:
        if not self.is_rsa:
            raise KeyPolicyError(f"{self.value} is not an RSA key type")
        return int(self.value[3:])


_CURVES: dict[KeyType, type[ec.EllipticCurve]] = {
    KeyType.P256: ec.SECP256R1,
    KeyType.P384: ec.SECP384R1,
}


def generate_key(key_type: KeyType | str) -> PrivateKey:
    """A fresh private key of ``key_type`` (parsed if given as text)."""
    kt = key_type if isinstance(key_type, KeyType) else KeyType.parse(key_type)
    if kt.is_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=kt.rsa_bits)
    return ec.generate_private_key(_CURVES[kt]())


def key_type_of(key: PrivateKeyTypes | PublicKeyTypes) -> KeyType:
    """The :class:`KeyType` of a key, or :class:`KeyPolicyError` if the connector refuses it."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyPolicyError(
                f"RSA-{key.key_size} refused: RSA keys must be at least {MIN_RSA_BITS} bits"
            )
        try:
            return KeyType(f"rsa{key.key_size}")
        except ValueError:
            raise KeyPolicyError(f"RSA-{key.key_size} is not a supported size") from None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for kt, curve in _CURVES.items():
            if isinstance(key.curve, curve):
                return kt
        raise KeyPolicyError(f"curve {key.curve.name} is not supported (P-256, P-384 are)")
    raise KeyPolicyError(f"{type(key).__name__} keys are not supported (RSA or ECDSA are)")


def check_key(key: PrivateKeyTypes) -> PrivateKey:
    """``key`` narrowed to a supported type, or :class:`KeyPolicyError`."""
    key_type_of(key)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def public_key_id(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo, hex: a safe name for a key in logs and intents."""
    public = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise KeyPolicyError(f"{type(key).__name__} keys are not supported (RSA or ECDSA are)")
    spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()
