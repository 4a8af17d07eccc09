"""The DER PKCS#12 writer against cryptography's own PFX and its reader."""

from __future__ import annotations

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from connector.pki import KeyType, generate_key, load_pfx, pack_pfx, read_pfx
from connector.pki._pkcs12 import _der, password_less_pfx
from connector.pki.keys import PrivateKey
from tests.unit.pki._ca import TestCA, make_intermediate, make_root


@pytest.fixture(scope="module")
def chain() -> tuple[TestCA, TestCA]:
    root = make_root()
    return root, make_intermediate(root)


def _leaf(issuing: TestCA, key: PrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-0001")])
    return issuing.sign(subject, key.public_key())


def _authenticated_content(pfx: bytes) -> bytes:
    parsed = asn1_pkcs12.Pfx.load(pfx)
    content: bytes = parsed["auth_safe"]["content"].native
    return content


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.P256])
@pytest.mark.parametrize("with_chain", [True, False])
def test_the_authenticated_content_is_cryptographys_byte_for_byte(
    chain: tuple[TestCA, TestCA], key_type: KeyType, with_chain: bool
) -> None:
    root, issuing = chain
    key = generate_key(key_type)
    cert = _leaf(issuing, key)
    cas = [issuing.certificate, root.certificate] if with_chain else []
    theirs = pkcs12.serialize_key_and_certificates(
        b"corp-wifi", key, cert, cas or None, serialization.NoEncryption()
    )
    ours = pack_pfx(key, cert, cas, "corp-wifi")
    assert _authenticated_content(ours) == _authenticated_content(theirs)


def test_the_mac_is_checked_by_openssl_and_takes_one_iteration(
    chain: tuple[TestCA, TestCA],
) -> None:
    root, issuing = chain
    key = generate_key(KeyType.RSA2048)
    cert = _leaf(issuing, key)
    pfx = pack_pfx(key, cert, [issuing.certificate, root.certificate], "pfxha")
    mac = asn1_pkcs12.Pfx.load(pfx)["mac_data"]
    assert mac["iterations"].native == 1
    assert mac["mac"]["digest_algorithm"]["algorithm"].native == "sha256"
    assert len(mac["mac_salt"].native) == 8

    opened = pkcs12.load_pkcs12(pfx, None)  # OpenSSL's PKCS12_parse: verifies the MAC
    assert opened.cert is not None
    assert opened.cert.certificate == cert
    assert opened.cert.friendly_name == b"pfxha"
    assert [c.certificate for c in opened.additional_certs] == [
        issuing.certificate,
        root.certificate,
    ]
    assert load_pfx(pfx)[0].public_key() == key.public_key()
    assert read_pfx(pfx)[1] == cert

    # One flipped bit of the digest and OpenSSL refuses it: the MAC is real.
    digest_at = pfx.index(mac["mac"]["digest"].native)
    tampered = bytearray(pfx)
    tampered[digest_at] ^= 0x01
    with pytest.raises(ValueError, match="Invalid password or PKCS12 data"):
        pkcs12.load_key_and_certificates(bytes(tampered), None)


def test_a_fixed_salt_gives_the_same_bytes_and_a_new_salt_new_ones() -> None:
    args: tuple[bytes, bytes, list[bytes], str] = (b"\x30\x03\x02\x01\x00", b"\x30\x00", [], "x")
    assert password_less_pfx(*args, salt=b"s" * 8) == password_less_pfx(*args, salt=b"s" * 8)
    assert password_less_pfx(*args) != password_less_pfx(*args)  # a random salt each time
    with pytest.raises(ValueError, match="salt"):
        password_less_pfx(*args, salt=b"")


@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65535, 65536])
def test_der_lengths_use_the_shortest_form(size: int) -> None:
    encoded = _der(0x04, b"\x00" * size)
    header = encoded[: len(encoded) - size]
    if size < 128:
        assert header == bytes((0x04, size))
    else:
        length = size.to_bytes((size.bit_length() + 7) // 8, "big")
        assert header == bytes((0x04, 0x80 | len(length))) + length
