"""Who may talk to the lab's CFSSL servers: a small PKI for their mutual TLS.

    access = CaAccess(run_dir / "access", host="127.0.0.1")
    access.ensure()                          # access CA + the servers' TLS certificate, once
    access.client("c1")                      # (cert, key 0600) with CN "c1", made once
    access.cn_regex(["c1", "c2", "lab"])     # ^(?:c1|c2|lab)$ for cfssl serve -mutual-tls-cn
    access.ssl_context("lab")                # verifies the servers, presents lab's certificate

CFSSL 1.2 (Debian ``golang-cfssl``) has no authentication on ``newcert``,
``revoke`` (``removeFromCRL`` included), ``certinfo``, ``scan``, ``init_ca``,
... and cannot turn them off. ``cfssl serve -tls-cert -tls-key -mutual-tls-ca
-mutual-tls-cn`` closes them all at once: without a certificate of the access
CA the TLS handshake fails; with one whose CN the regex does not allow, every
request is answered ``Invalid CN``. Each connector has its own client
certificate (CN = its name); revoking one is removing its name from the regex
(``CfsslLab.deny``). The access CA is the CA operator's, not the cloud
service's: the service cannot mint a credential for the CA tier.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from chaos.launch._x509 import build_certificate, write_pair

__all__ = ["CaAccess"]

_VALIDITY = dt.timedelta(days=365)


class CaAccess:
    """The access CA under ``directory``, the servers' certificate and one per client."""

    def __init__(self, directory: Path, *, hosts: Sequence[str] = ("127.0.0.1",)) -> None:
        self.directory = Path(directory)
        self.hosts = tuple(dict.fromkeys(hosts))

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_pair(self) -> tuple[Path, Path]:
        return self.directory / "server.pem", self.directory / "server-key.pem"

    def ensure(self) -> None:
        """Create the access CA and the servers' certificate if missing (idempotent)."""
        if self.ca_path.exists() and self.server_pair[0].exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        cert = build_certificate(
            "pfxha Lab CA access CA",
            key.public_key(),
            key,
            validity=10 * _VALIDITY,
            extensions=[(x509.BasicConstraints(ca=True, path_length=0), True), (usage, True)],
        )
        write_pair(self.ca_path, self.directory / "ca-key.pem", cert, key)
        sans = [x509.IPAddress(ipaddress.ip_address(h)) for h in self.hosts]
        self._issue("cfssl-server", *self.server_pair, sans, ExtendedKeyUsageOID.SERVER_AUTH)

    def _issue(
        self,
        cn: str,
        cert_path: Path,
        key_path: Path,
        sans: Sequence[x509.GeneralName],
        usage: x509.ObjectIdentifier,
    ) -> None:
        ca_key = serialization.load_pem_private_key(
            (self.directory / "ca-key.pem").read_bytes(), None
        )
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([usage]), False),
        ]
        if sans:
            extensions.append((x509.SubjectAlternativeName(sans), False))
        cert = build_certificate(
            cn,
            key.public_key(),
            ca_key,
            issuer=ca_cert.subject,
            validity=_VALIDITY,
            extensions=extensions,
        )
        write_pair(cert_path, key_path, cert, key)

    def client(self, name: str) -> tuple[Path, Path]:
        """(certificate, key 0600) of client ``name`` (CN = name), created on first use."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            raise ValueError(f"CA client name {name!r}: letters, digits, '_', '.', '-'")
        home = self.directory / "clients"
        home.mkdir(exist_ok=True, mode=0o700)
        cert, key = home / f"{name}.pem", home / f"{name}-key.pem"
        if not cert.exists():
            self._issue(name, cert, key, [], ExtendedKeyUsageOID.CLIENT_AUTH)
        return cert, key

    @staticmethod
    def cn_regex(names: Iterable[str]) -> str:
        """The anchored RE2 regex that allows exactly ``names`` as client CNs."""
        allowed = sorted(set(names))
        if not allowed:
            raise ValueError("at least one client must be allowed (the lab's own prober)")
        return "^(?:" + "|".join(re.escape(n) for n in allowed) + ")$"

    def ssl_context(self, name: str) -> ssl.SSLContext:
        """Verifies the servers against the access CA and presents ``name``'s certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        cert, key = self.client(name)
        context.load_cert_chain(str(cert), str(key))
        return context
