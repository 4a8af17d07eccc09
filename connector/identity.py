"""The connector's own identity: enrollment, the client certificate, renewal.

    identity = enroll("https://svc:8443", token, Path("/etc/pfxha/identity"), verify="ca.pem")
    client = ServiceClient(url, cert=identity.cert_pair, verify="ca.pem")
    renew_if_due(identity, url, verify="ca.pem", metrics=metrics)   # call now and then

The directory holds ``key.pem`` (the private key: generated here, never sent,
created 0600), ``cert.pem`` (issued by the service's connector CA) and
``connector-ca.pem``. :meth:`ConnectorIdentity.load` refuses a key file that
group or others may read (:class:`InsecureFileError`, with the fix in the
message). Renewal makes a new key and swaps both files in by rename, so a
crash leaves either the old pair or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.service_client import tls_context

__all__ = [
    "CertificateRenewer",
    "ConnectorIdentity",
    "EnrollmentError",
    "InsecureFileError",
    "check_private_file",
    "check_secret_files",
    "enroll",
    "renew",
    "renew_if_due",
    "service_client_tls",
    "write_private_file",
]

_log = logging.getLogger("pfxha.connector")

KEY_FILE, CERT_FILE, CA_FILE = "key.pem", "cert.pem", "connector-ca.pem"


class EnrollmentError(Exception):
    """Enrollment or renewal was refused or could not be done (never carries the token)."""


class InsecureFileError(Exception):
    """A file holding a secret is readable by group or others."""


class _ExpiryMetric(Protocol):
    def set_certificate_expiry(
        self, not_after: dt.datetime | float, not_before: dt.datetime | float | None = None
    ) -> None: ...


def check_private_file(path: Path) -> None:
    """Raise :class:`InsecureFileError` unless only the owner may read ``path``."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureFileError(
            f"{path} holds a secret but is accessible by group/others (mode {oct(mode)}); "
            f"run: chmod 600 {path}"
        )


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as 0600 from the first byte, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ConnectorIdentity:
    directory: Path

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert_pair(self) -> tuple[str, str]:
        """What httpx takes as ``cert=``."""
        return str(self.cert_path), str(self.key_path)

    @classmethod
    def load(cls, directory: Path) -> ConnectorIdentity:
        identity = cls(directory)
        for path in (identity.key_path, identity.cert_path):
            if not path.exists():
                raise EnrollmentError(f"{path} missing: run `pfxha connector enroll` first")
        check_private_file(identity.key_path)
        return identity

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    @property
    def name(self) -> str:
        cns = self.certificate().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else ""

    def not_after(self) -> dt.datetime:
        return self.certificate().not_valid_after_utc


def _new_key_and_csr(name: str | None) -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, name)] if name else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def _post(url: str, path: str, body: dict[str, Any], *, what: str, **http: Any) -> dict[str, Any]:
    http["verify"] = tls_context(http.pop("verify", True), http.pop("cert", None))
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=15.0, **http) as client:
            answer = client.post(path, json=body)
    except httpx.HTTPError as exc:
        raise EnrollmentError(f"{what}: {type(exc).__name__}: {exc}") from None
    if answer.status_code != 200:
        try:
            detail = str(answer.json().get("detail", ""))[:300]
        except ValueError:
            detail = answer.reason_phrase
        raise EnrollmentError(f"{what} refused: HTTP {answer.status_code}: {detail}")
    result: dict[str, Any] = answer.json()
    return result


def _store(directory: Path, key_pem: bytes, answer: dict[str, Any]) -> ConnectorIdentity:
    cert = x509.load_pem_x509_certificate(str(answer["certificate_pem"]).encode())
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise EnrollmentError("the service returned a certificate for another key")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = ConnectorIdentity(directory)
    identity.ca_path.write_text(str(answer["ca_certificate_pem"]))
    # Key first: a crash between the two renames leaves a new key with the old
    # certificate, which load() + a renewal attempt will notice as a mismatch
    # (TLS refuses it); never an old key exposed.
    write_private_file(identity.key_path, key_pem)
    tmp = identity.cert_path.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, identity.cert_path)
    return identity


def enroll(
    service_url: str,
    token: str,
    out_dir: Path,
    *,
    name: str | None = None,
    verify: Any = True,
    transport: httpx.BaseTransport | None = None,
) -> ConnectorIdentity:
    """Exchange a one-time token for a connector certificate; the key never leaves."""
    key_pem, csr_pem = _new_key_and_csr(name)
    answer = _post(
        service_url,
        "/api/v1/enroll",
        {"token": token, "csr_pem": csr_pem},
        what="enrollment",
        verify=verify,
        transport=transport,
    )
    return _store(out_dir, key_pem, answer)


def renew(
    identity: ConnectorIdentity,
    service_url: str,
    *,
    verify: Any = True,
    transport: httpx.BaseTransport | None = None,
) -> ConnectorIdentity:
    """A new key and certificate, proven by the current certificate (mutual TLS)."""
    name = identity.name
    key_pem, csr_pem = _new_key_and_csr(name)
    answer = _post(
        service_url,
        "/api/v1/connector/certificate/renew",
        {"name": name, "csr_pem": csr_pem},
        what="certificate renewal",
        verify=verify,
        cert=identity.cert_pair,
        transport=transport,
    )
    return _store(identity.directory, key_pem, answer)


def renew_if_due(
    identity: ConnectorIdentity,
    service_url: str,
    *,
    verify: Any = True,
    remaining_fraction: float = 1 / 3,
    metrics: _ExpiryMetric | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    transport: httpx.BaseTransport | None = None,
) -> bool:
    """Renew once less than ``remaining_fraction`` of the lifetime is left; True if renewed.

    The validity (after any renewal) goes to ``metrics.set_certificate_expiry``.
    A refused renewal raises :class:`EnrollmentError`; the old pair stays.
    """
    cert = identity.certificate()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    due = clock() >= cert.not_valid_after_utc - lifetime * remaining_fraction
    if due:
        identity = renew(identity, service_url, verify=verify, transport=transport)
    if metrics is not None:
        current = identity.certificate()
        metrics.set_certificate_expiry(
            current.not_valid_after_utc, not_before=current.not_valid_before_utc
        )
    return due


class CertificateRenewer:
    """A daemon thread that keeps the connector certificate fresh without a person.

    Every ``check_every_s`` it calls :func:`renew_if_due`; after a renewal the
    service client presents the new certificate (``reload``). A refused or
    failed renewal is logged and retried at the next check; the old pair stays
    usable until it expires (and the expiry metric alerts before that)::

        with CertificateRenewer(identity, url, verify=ca, reload=client.reload_client_certificate,
                                metrics=metrics):
            agent.run()
    """

    def __init__(
        self,
        identity: ConnectorIdentity,
        service_url: str,
        *,
        verify: Any = True,
        reload: Callable[[], None] = lambda: None,
        metrics: _ExpiryMetric | None = None,
        check_every_s: float = 3600.0,
        remaining_fraction: float = 1 / 3,
    ) -> None:
        if check_every_s <= 0:
            raise ValueError("service.renew_check_s must be > 0")
        self.identity = identity
        self.service_url = service_url
        self.verify = verify
        self.reload = reload
        self.metrics = metrics
        self.check_every_s = check_every_s
        self.remaining_fraction = remaining_fraction
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        try:
            renewed = renew_if_due(
                self.identity,
                self.service_url,
                verify=self.verify,
                metrics=self.metrics,
                remaining_fraction=self.remaining_fraction,
            )
        except (EnrollmentError, OSError, ValueError) as exc:
            _log.warning("connector certificate renewal failed (will retry): %s", exc)
            return False
        if renewed:
            self.reload()
            _log.info("connector certificate renewed, valid until %s", self.identity.not_after())
        return renewed

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.check_every_s)

    def __enter__(self) -> CertificateRenewer:
        self._thread = threading.Thread(target=self._run, name="cert-renewal", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def service_client_tls(ca_file: str | None, identity_dir: str | None) -> dict[str, Any]:
    """``verify``/``cert`` for :class:`ServiceClient` from the connector's settings.

    Loads (and so checks the permissions of) the identity: a key file others
    may read stops the connector at start-up with :class:`InsecureFileError`.
    """
    tls: dict[str, Any] = {"verify": ca_file or True}
    if identity_dir:
        tls["cert"] = ConnectorIdentity.load(Path(identity_dir)).cert_pair
    return tls


def check_secret_files(paths: Iterable[str | None]) -> None:
    """Refuse to start (:class:`InsecureFileError`) when a secret file others may read is
    configured: the CA sign keys, the ZooKeeper password. Missing files are left to
    the code that reads them (its error names the setting)."""
    for path in paths:
        if path and Path(path).exists():
            check_private_file(Path(path))
