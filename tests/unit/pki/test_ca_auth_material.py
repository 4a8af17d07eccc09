"""SIGHUP's CA auth reload (issue 17): what new material is refused, and why, by setting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.ca import AuthMaterialError, cfssl_material, openbao_material

NOW = dt.datetime(2026, 12, 2, 21, 0, tzinfo=dt.UTC)


def _write(path: Path, data: str | bytes, mode: int = 0o600) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return str(path)


def _pair(tmp_path: Path, name: str, *, days: int = 30) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        _write(tmp_path / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644),
        _write(tmp_path / f"{name}-key.pem", pem),
    )


def _refused(spec: dict[str, str]) -> tuple[str, str]:
    with pytest.raises(AuthMaterialError) as caught:
        cfssl_material(spec, now=NOW)
    return caught.value.setting, caught.value.reason


def test_a_good_key_and_pair_are_read(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "c1")
    spec = {"auth_key_file": _write(tmp_path / "k", "00ff" * 8)}
    spec |= {"client_certificate": cert, "client_key_file": key}
    material = cfssl_material(spec, now=NOW)
    assert material.auth_key == bytes.fromhex("00ff" * 8)
    assert material.settings == ("auth_key_file", "client_certificate", "client_key_file")


def test_auth_key_file_refusals_name_the_setting(tmp_path: Path) -> None:
    assert _refused({"auth_key_file": _write(tmp_path / "a", "zz")}) == (
        "auth_key_file",
        "is not a hex key",
    )
    setting, reason = _refused({"auth_key_file": _write(tmp_path / "b", "00ff", 0o644)})
    assert setting == "auth_key_file"
    assert "0644" in reason or "chmod" in reason
    assert _refused({"auth_key_file": _write(tmp_path / "c", "")})[0] == "auth_key_file"
    assert _refused({"auth_key_file": str(tmp_path / "missing")})[0] == "auth_key_file"


def test_client_pair_refusals_name_the_setting(tmp_path: Path) -> None:
    cert1, key1 = _pair(tmp_path, "c1")
    _, key2 = _pair(tmp_path, "c2")
    old_cert, old_key = _pair(tmp_path, "old", days=-1)
    mismatch = _refused({"client_certificate": cert1, "client_key_file": key2})
    assert mismatch[0] == "client_key_file"
    assert "does not match" in mismatch[1]
    expired = _refused({"client_certificate": old_cert, "client_key_file": old_key})
    assert expired[0] == "client_certificate"
    assert "expired" in expired[1]
    junk = _write(tmp_path / "junk.pem", "not a certificate", 0o644)
    assert _refused({"client_certificate": junk, "client_key_file": key1})[0] == (
        "client_certificate"
    )
    assert _refused({"client_certificate": cert1})[0] == "client_key_file"  # half a pair


def test_openbao_files_are_read_and_checked(tmp_path: Path) -> None:
    role = _write(tmp_path / "role", "role-1\n")
    secret = _write(tmp_path / "secret", "secret-1\n")
    creds = openbao_material({"role_id_file": role, "secret_id_file": secret})
    assert (creds.role_id, creds.secret_id, creds.mount) == ("role-1", "secret-1", "approle")
    loose = _write(tmp_path / "loose", "secret-1", 0o640)
    with pytest.raises(AuthMaterialError) as caught:
        openbao_material({"role_id_file": role, "secret_id_file": loose})
    assert caught.value.setting == "secret_id_file"
