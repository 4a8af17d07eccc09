"""A delivered PFX is checked as the device would: open, parse, chain to the root."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from chaos.checkers import verify_delivered_pfx
from chaos.checkers.pfx import check_pfx_history
from chaos.history import History
from connector.pki.envelope import seal

_NOW = datetime.datetime.now(datetime.UTC)


def _cert(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(minutes=1))
        .not_valid_after(_NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def _name(cn: str, serial: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


@dataclass(frozen=True)
class _Pki:
    root: x509.Certificate
    inter: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    device: x509.Certificate
    device_key: rsa.RSAPrivateKey


def _pki() -> _Pki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(_name("lab root"), root_key.public_key(), _name("lab root"), root_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _cert(_name("primary"), inter_key.public_key(), root.subject, root_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(_name("alice", "dev-1"), leaf_key.public_key(), inter.subject, inter_key, ca=False)
    device_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    device = _cert(_name("device dev-1"), device_key.public_key(), root.subject, root_key, ca=False)
    return _Pki(root, inter, leaf, leaf_key, device, device_key)


def _pfx(p: _Pki, chain: list[x509.Certificate] | None) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"alice", p.leaf_key, p.leaf, chain, serialization.NoEncryption()
    )


def test_good_pfx_opens_and_chains_and_tampering_is_caught() -> None:
    p = _pki()
    blob = seal(_pfx(p, [p.inter]), p.device)
    assert verify_delivered_pfx(blob, p.device, p.device_key, p.root, device_id="dev-1") == []

    wrong_device = verify_delivered_pfx(blob, p.device, p.device_key, p.root, device_id="dev-2")
    assert wrong_device == ["certificate subject does not name device dev-2"]

    problems = verify_delivered_pfx(blob, p.device, p.device_key, _pki().root)
    assert len(problems) == 1
    assert "CN=primary not signed by root" in problems[0]

    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    problems = verify_delivered_pfx(blob, p.device, stranger_key, p.root)
    assert len(problems) == 1
    assert "does not open" in problems[0]

    problems = verify_delivered_pfx(seal(_pfx(p, None), p.device), p.device, p.device_key, p.root)
    assert problems == ["chain broken: no issuer CN=primary in the PFX"]


def test_pfx_failures_recorded_by_devices_become_violations() -> None:
    history = History()
    op = history.invoke("device-d1", "checkin", {"device": "d1"})
    history.complete(
        op,
        "ok",
        {
            "device": "d1",
            "delivered": [
                {"request": "r1", "serial": "5", "pfx_ok": True},
                {"request": "r2", "serial": "6", "pfx_ok": False, "pfx_errors": ["bad sig"]},
            ],
        },
    )
    assert check_pfx_history(history.events) == [
        "PFX for request r2 (serial 6) failed on device d1: bad sig"
    ]
