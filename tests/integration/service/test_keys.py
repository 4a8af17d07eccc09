"""The service's key files: created private, refused when others can read them, reused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaos.service.keys import KeyFileError, ServiceKeys
from connector.pki.envelope import seal


def test_keys_are_created_0600_and_reused(tmp_path: Path) -> None:
    first = ServiceKeys.load_or_create(tmp_path / "keys")
    for name in ("kra.key", "device-ca.key"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    again = ServiceKeys.load_or_create(tmp_path / "keys")
    assert again.kra_certificate == first.kra_certificate
    # An envelope sealed before a restart still opens after it.
    assert again.open_from_connector(seal(b"pfx", first.kra_certificate)) == b"pfx"


def test_a_key_readable_by_others_stops_the_start(tmp_path: Path) -> None:
    ServiceKeys.load_or_create(tmp_path / "keys")
    (tmp_path / "keys" / "kra.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        ServiceKeys.load_or_create(tmp_path / "keys")


def test_device_certificates_name_the_device_and_accept_only_rsa(tmp_path: Path) -> None:
    keys = ServiceKeys.load_or_create(tmp_path / "keys")
    cert, key_pem = keys.issue_device_certificate("dev-7")
    assert key_pem is not None
    assert b"PRIVATE KEY" in key_pem
    assert cert.issuer == keys.device_ca_certificate.subject
    assert "dev-7" in cert.subject.rfc4514_string()
    ec_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="RSA"):  # CMS key transport needs RSA
        keys.issue_device_certificate("dev-8", ec_public)
