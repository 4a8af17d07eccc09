from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from connector.pki.envelope import EnvelopeError, open_envelope, seal


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_seal_then_open_round_trips_to_the_recipient_only() -> None:
    kra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kra = _self_signed(kra_key, "kra")
    other = _self_signed(other_key, "other")
    blob = seal(b"pfx bytes", kra)
    assert b"pfx bytes" not in blob
    assert open_envelope(blob, kra, kra_key) == b"pfx bytes"
    with pytest.raises(EnvelopeError):
        open_envelope(blob, other, other_key)


def test_seal_refuses_a_non_rsa_recipient() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(EnvelopeError, match="RSA"):
        seal(b"x", _self_signed(ec_key, "ec"))


def test_open_rejects_garbage() -> None:
    kra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(EnvelopeError):
        open_envelope(b"not cms", _self_signed(kra_key, "kra"), kra_key)
