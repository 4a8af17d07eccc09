"""Enrollment tokens and the admin credential, in process with an injected clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from chaos.service.app import ServiceConfig, create_app
from chaos.service.auth import hash_credential, verify_credential


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def _csr(name: str | None = None, key: object | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, name)] if name else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def app(tmp_path: Path) -> tuple[TestClient, Clock, Path]:
    clock = Clock()
    db = tmp_path / "service.db"
    config = ServiceConfig(db_path=db, admin_token="t" * 32, renewal_interval_s=0)
    return TestClient(create_app(config, clock=clock)), clock, db


ADMIN = {"Authorization": "Bearer " + "t" * 32}


def _token(client: TestClient, name: str, ttl_s: int = 60) -> str:
    answer = client.post(
        f"/api/v1/admin/connectors/{name}/enrollment-token", json={"ttl_s": ttl_s}, headers=ADMIN
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def test_a_token_is_good_once_for_its_name_and_stored_only_hashed(
    app: tuple[TestClient, Clock, Path],
) -> None:
    client, _, db = app
    token = _token(client, "conn-a")
    first = client.post("/api/v1/enroll", json={"token": token, "csr_pem": _csr()})
    assert first.status_code == 200, first.text
    cert = x509.load_pem_x509_certificate(first.json()["certificate_pem"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "conn-a"
    again = client.post("/api/v1/enroll", json={"token": token, "csr_pem": _csr()})
    assert again.status_code == 403
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump


def test_an_expired_token_is_refused(app: tuple[TestClient, Clock, Path]) -> None:
    client, clock, _ = app
    token = _token(client, "conn-b", ttl_s=10)
    clock.now += 11
    answer = client.post("/api/v1/enroll", json={"token": token, "csr_pem": _csr()})
    assert answer.status_code == 403
    assert answer.json()["detail"] == "enrollment token unknown, used or expired"


def test_a_csr_for_another_name_or_a_weak_key_is_refused(
    app: tuple[TestClient, Clock, Path],
) -> None:
    client, _, _ = app
    other = client.post(
        "/api/v1/enroll", json={"token": _token(client, "conn-c"), "csr_pem": _csr("conn-x")}
    )
    assert other.status_code == 400
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    small = client.post(
        "/api/v1/enroll", json={"token": _token(client, "conn-c"), "csr_pem": _csr(key=weak)}
    )
    assert small.status_code == 400
    junk = client.post(
        "/api/v1/enroll", json={"token": _token(client, "conn-c"), "csr_pem": "not a csr"}
    )
    assert junk.status_code == 400


def test_tokens_need_the_admin_credential(app: tuple[TestClient, Clock, Path]) -> None:
    client, _, _ = app
    answer = client.post("/api/v1/admin/connectors/x/enrollment-token", json={})
    assert answer.status_code == 401
    metrics = client.get("/metrics").text
    assert 'pfxha_service_auth_refusals_total{api="admin",reason="bad_credential"} 1.0' in metrics


def test_scrypt_credential_round_trip() -> None:
    stored = hash_credential("correct horse")
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored
    assert verify_credential("correct horse", stored)
    assert not verify_credential("wrong", stored)
    assert not verify_credential("correct horse", "scrypt$bad")


def test_service_with_an_scrypt_admin_credential(tmp_path: Path) -> None:
    config = ServiceConfig(
        db_path=tmp_path / "s.db",
        admin_credential_hash=hash_credential("s3cret-admin"),
        renewal_interval_s=0,
    )
    client = TestClient(create_app(config))
    assert client.get("/api/v1/read/connectors").status_code == 401
    ok = {"Authorization": "Bearer s3cret-admin"}
    assert client.get("/api/v1/read/connectors", headers=ok).status_code == 200
    assert client.get("/api/v1/read/connectors", headers=ok).status_code == 200  # cached


def test_a_refused_csr_does_not_use_up_the_token(app: tuple[TestClient, Clock, Path]) -> None:
    client, _, _ = app
    token = _token(client, "conn-d")
    refused = client.post("/api/v1/enroll", json={"token": token, "csr_pem": _csr("conn-x")})
    assert refused.status_code == 400
    accepted = client.post("/api/v1/enroll", json={"token": token, "csr_pem": _csr("conn-d")})
    assert accepted.status_code == 200
