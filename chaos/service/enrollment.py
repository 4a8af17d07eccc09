"""Connector identity: the service's own connector CA, one-time enrollment tokens,
and the check of a connector's client certificate on every call.

    ca = ConnectorCA.load_or_create(key_dir)            # connector-ca.{key,pem}, key 0600
    token = create_token(store, tx, "conn-a", ttl_s=600) # shown once; only its SHA-256 is kept
    cert = enroll(store, ca, token, csr_pem)             # single use, before it expires
    name = ca.verify_client(pem, now)                    # CN, or raises ApiError(403)

Tokens are 256-bit random strings, so a SHA-256 of them is as good as a slow
hash (there is nothing to guess); they are consumed in the same transaction
that records the certificate, so a token is good for exactly one certificate.
The certificate's CN is the name the token was made for, whatever the CSR
says; renewal keeps the name of the certificate presented.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chaos.service.keys import _load_or_create_pair
from chaos.service.store import ApiError, Store

__all__ = ["ConnectorCA", "create_token", "enroll", "renew", "token_digest"]

_CA_NAME = "pfxha stand-in service connector CA"
DEFAULT_VALIDITY = dt.timedelta(days=30)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ConnectorCA:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    certificate_path: Path
    validity: dt.timedelta = DEFAULT_VALIDITY

    @classmethod
    def load_or_create(
        cls, directory: Path, validity: dt.timedelta = DEFAULT_VALIDITY
    ) -> ConnectorCA:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = _load_or_create_pair(directory, "connector-ca", _CA_NAME, ca=True)
        return cls(cert, key, directory / "connector-ca.pem", validity)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, csr_pem: str, name: str, now: dt.datetime) -> x509.Certificate:
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise ApiError(400, "csr_pem is not a PEM certificate signing request") from exc
        try:
            if not csr.is_signature_valid:
                raise ApiError(400, "the CSR's signature does not verify")
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ApiError(400, "the CSR's key is unreadable or of an unsupported kind") from exc
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise ApiError(400, "connector keys must be RSA >= 2048 bits or EC P-256/P-384")
        elif not (
            isinstance(public_key, ec.EllipticCurvePublicKey)
            and public_key.curve.name in ("secp256r1", "secp384r1")
        ):
            raise ApiError(400, "connector keys must be RSA >= 2048 bits or EC P-256/P-384")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cns and cns[0].value != name:
            raise ApiError(400, f"the CSR names {cns[0].value!r}, the token is for {name!r}")
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + self.validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def verify_client(self, pem: str | None, now: dt.datetime) -> tuple[str, int]:
        """(CN, serial) of a connector certificate this CA issued and that is valid now.

        The TLS layer already verified the chain against the bundle it trusts;
        this checks it is *this* CA's (not the device CA's) and in its validity.
        """
        if pem is None:
            raise ApiError(401, "a connector client certificate is required (mutual TLS)")
        cert = x509.load_pem_x509_certificate(pem.encode())
        if cert.issuer != self.certificate.subject:
            raise ApiError(403, "the client certificate is not a connector certificate")
        try:
            _verify_signature(self.certificate, cert)
        except InvalidSignature as exc:
            raise ApiError(403, "the client certificate is not a connector certificate") from exc
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ApiError(403, "the connector certificate has expired or is not yet valid")
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns:
            raise ApiError(403, "the connector certificate has no CN")
        return str(cns[0].value), cert.serial_number


def _verify_signature(issuer: x509.Certificate, cert: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    algorithm = cert.signature_hash_algorithm
    key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)


def create_token(store: Store, tx: sqlite3.Connection, name: str, ttl_s: int) -> tuple[str, str]:
    """A new one-time token for ``name``: (token, expires_at ISO)."""
    token = secrets.token_urlsafe(32)
    expires = store.clock() + ttl_s
    tx.execute(
        "INSERT INTO enrollment_tokens(token_sha256, name, created_at, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (token_digest(token), name, store.now_iso(), expires),
    )
    return token, dt.datetime.fromtimestamp(expires, dt.UTC).isoformat()


def _record(tx: sqlite3.Connection, store: Store, cert: x509.Certificate, via: str) -> None:
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    tx.execute(
        "INSERT INTO connector_certificates(serial, name, issued_at, not_after, via) "
        "VALUES (?, ?, ?, ?, ?)",
        (str(cert.serial_number), name, store.now_iso(), cert.not_valid_after_utc.isoformat(), via),
    )


def enroll(store: Store, ca: ConnectorCA, token: str, csr_pem: str) -> x509.Certificate:
    """Exchange a one-time token and a CSR for a connector certificate."""
    now = dt.datetime.fromtimestamp(store.clock(), dt.UTC)
    with store.db.transaction() as tx:
        row = tx.execute(
            "SELECT * FROM enrollment_tokens WHERE token_sha256 = ?", (token_digest(token),)
        ).fetchone()
        # One answer for unknown, used and expired: a guesser learns nothing.
        if row is None or row["used_at"] is not None or row["expires_at"] < store.clock():
            raise ApiError(403, "enrollment token unknown, used or expired")
        name = str(row["name"])
        if tx.execute("SELECT 1 FROM revoked_connectors WHERE name = ?", (name,)).fetchone():
            raise ApiError(403, f"connector {name!r} was revoked by an admin")
        cert = ca.sign(csr_pem, name, now)
        tx.execute(
            "UPDATE enrollment_tokens SET used_at = ? WHERE token_sha256 = ?",
            (store.now_iso(), token_digest(token)),
        )
        _record(tx, store, cert, "enroll")
    return cert


def renew(store: Store, ca: ConnectorCA, name: str, csr_pem: str) -> x509.Certificate:
    """A fresh certificate for ``name`` (the caller proved it holds a valid one)."""
    now = dt.datetime.fromtimestamp(store.clock(), dt.UTC)
    with store.db.transaction() as tx:
        if tx.execute("SELECT 1 FROM revoked_connectors WHERE name = ?", (name,)).fetchone():
            raise ApiError(403, f"connector {name!r} was revoked by an admin")
        cert = ca.sign(csr_pem, name, now)
        _record(tx, store, cert, "renew")
    return cert
