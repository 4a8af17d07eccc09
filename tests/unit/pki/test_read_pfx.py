"""read_pfx: the service's cheap PFX read agrees with OpenSSL's and refuses bad keys."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from connector.pki import PfxError, load_pfx, pack_pfx, read_pfx
from connector.pki.keys import PrivateKey


def _certificate(key: PrivateKey, cn: str, signer: PrivateKey | None = None) -> x509.Certificate:
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
        .sign(signer or key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_reads_what_openssl_reads(kind: str, rsa_key: rsa.RSAPrivateKey) -> None:
    key: PrivateKey = rsa_key if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, "ca")
    cert = _certificate(key, "user", signer=ca_key)
    pfx = pack_pfx(key, cert, [ca], friendly_name="user")

    fast_key, fast_cert, fast_chain = read_pfx(pfx)
    slow_key, slow_cert, slow_chain = load_pfx(pfx)

    assert fast_cert == slow_cert == cert
    assert fast_chain == slow_chain == [ca]
    assert fast_key.public_key() == slow_key.public_key() == key.public_key()


@pytest.mark.parametrize("field", ["d", "dmp1", "dmq1", "iqmp"])
def test_refuses_a_key_that_does_not_work(field: str, rsa_key: rsa.RSAPrivateKey) -> None:
    numbers = rsa_key.private_numbers()
    values = {
        "p": numbers.p,
        "q": numbers.q,
        "d": numbers.d,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
    }
    values[field] += 2  # one wrong private value; the public half still matches
    broken = rsa.RSAPrivateNumbers(public_numbers=numbers.public_numbers, **values).private_key(
        unsafe_skip_rsa_key_validation=True
    )
    cert = _certificate(rsa_key, "user")
    pfx = pkcs12.serialize_key_and_certificates(
        b"user", broken, cert, None, serialization.NoEncryption()
    )
    with pytest.raises(PfxError, match="does not work"):
        read_pfx(pfx)


def test_refuses_a_certificate_of_another_key(rsa_key: rsa.RSAPrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    # cryptography refuses a mismatched key and cert; a lone key with another key's
    # certificate among the extra certificates is the same lie, told differently.
    pfx = pkcs12.serialize_key_and_certificates(
        b"user", rsa_key, None, [_certificate(other, "other")], serialization.NoEncryption()
    )
    with pytest.raises(PfxError, match="does not belong"):
        read_pfx(pfx)


@pytest.mark.parametrize("blob", [b"", b"garbage", b"\x30\x03\x02\x01\x03"])
def test_garbage_is_a_pfx_error(blob: bytes) -> None:
    with pytest.raises(PfxError):
        read_pfx(blob)


def test_a_password_protected_pfx_falls_back_to_openssl(rsa_key: rsa.RSAPrivateKey) -> None:
    pfx = pkcs12.serialize_key_and_certificates(
        b"user",
        rsa_key,
        _certificate(rsa_key, "user"),
        None,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(PfxError, match="cannot read PFX"):
        read_pfx(pfx)  # no password here: OpenSSL's refusal, not a crash
