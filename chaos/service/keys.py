"""The service's own key material: the KRA pair and the device-management CA.

Created on first start under ``kra_dir`` (keys 0600, refused when readable by
others) and loaded on every later start, so a restart keeps opening the
envelopes connectors sealed before it::

    keys = ServiceKeys.load_or_create(Path("run/service-keys"))
    pfx = keys.open_from_connector(envelope)             # KRA key
    cert, key_pem = keys.issue_device_certificate("dev-1")  # management cert (+ key once)
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.pki.envelope import open_envelope, seal

__all__ = ["KeyFileError", "ServiceKeys", "public_key_fingerprint"]

_KRA_NAME = "pfxha stand-in service KRA"
_DEVICE_CA_NAME = "pfxha stand-in service device CA"
_TEN_YEARS = dt.timedelta(days=3650)


class KeyFileError(RuntimeError):
    """A key file is unsafe (readable by others) or unreadable."""


def public_key_fingerprint(public_key_pem: bytes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: how intents and certificates are matched."""
    key = serialization.load_pem_public_key(public_key_pem)
    return _spki_sha256(key)


def _spki_sha256(key: object) -> str:
    der = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def certificate_fingerprint(cert: x509.Certificate) -> str:
    return _spki_sha256(cert.public_key())


@dataclass(frozen=True)
class ServiceKeys:
    kra_certificate: x509.Certificate
    kra_key: rsa.RSAPrivateKey
    device_ca_certificate: x509.Certificate
    device_ca_key: rsa.RSAPrivateKey

    @classmethod
    def load_or_create(cls, directory: Path) -> ServiceKeys:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        kra_cert, kra_key = _load_or_create_pair(directory, "kra", _KRA_NAME, ca=False)
        ca_cert, ca_key = _load_or_create_pair(directory, "device-ca", _DEVICE_CA_NAME, ca=True)
        return cls(kra_cert, kra_key, ca_cert, ca_key)

    def open_from_connector(self, envelope: bytes) -> bytes:
        """The PFX inside a connector's envelope (raises EnvelopeError)."""
        return open_envelope(envelope, self.kra_certificate, self.kra_key)

    def reseal_for_device(self, envelope: bytes, device_certificate: x509.Certificate) -> bytes:
        return seal(self.open_from_connector(envelope), device_certificate)

    def issue_device_certificate(
        self, device_id: str, public_key_pem: bytes | None = None
    ) -> tuple[x509.Certificate, bytes | None]:
        """A management certificate for ``device_id``; the new private key PEM if we made it."""
        key_pem: bytes | None = None
        if public_key_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public_key = key.public_key()
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        else:
            loaded = serialization.load_pem_public_key(public_key_pem)
            if not isinstance(loaded, rsa.RSAPublicKey) or loaded.key_size < 2048:
                raise ValueError("device management keys must be RSA of at least 2048 bits")
            public_key = loaded
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, f"device {device_id}"[:64]),
                        x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id[:64]),
                    ]
                )
            )
            .issuer_name(self.device_ca_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _TEN_YEARS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.device_ca_key, hashes.SHA256())
        )
        return cert, key_pem


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is accessible by group/others (mode {oct(mode & 0o777)}); "
            f"run: chmod 600 {path}"
        )


def _load_or_create_pair(
    directory: Path, stem: str, common_name: str, *, ca: bool
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
    if key_path.exists() and cert_path.exists():
        _check_private(key_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFileError(f"{key_path} does not hold an RSA key")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _TEN_YEARS)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    cert = builder.sign(key, hashes.SHA256())
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the start: never a moment where the key is world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key
