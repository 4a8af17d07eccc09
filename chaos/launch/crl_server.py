"""The CRL distribution point of the lab's issuing CAs: a tiny HTTP server.

Each request builds a fresh CRL from the CA's certdb (its revoked rows) and
signs it with that CA's key, so a revocation is on the CRL as soon as CFSSL
has recorded it. It runs as its own process, apart from the CAs, the way a
CDP lives on a web server and keeps serving while a CA is down::

    python -m chaos.launch.crl_server --spec run/cfssl/crl.json --port 8080
    GET /primary.crl       DER CRL (what the CDP URL in issued certificates names)
    GET /primary.crl.pem   the same, PEM
    GET /healthz           200 "ok"

The spec file maps CA names to ``{"cert": path, "key": path, "certdb": DSN,
"certdb_password_file": path}``: the certdb is read over TCP as the read-only
role (a SQLite path still works for a CA on this host). A certdb that does
not answer makes that CRL a 503, never an empty CRL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connector.ca._certdb import CertDB, CertDBError, CertRecord, open_certdb

__all__ = ["CrlAuthority", "build_crl", "load_spec", "main", "serve"]

log = logging.getLogger(__name__)

_REASONS: dict[int, x509.ReasonFlags] = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}

# A CRL is good for a short while: the lab revokes and checks within minutes.
CRL_VALIDITY = dt.timedelta(minutes=30)
CLOCK_SKEW = dt.timedelta(minutes=1)


def build_crl(
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    revoked: Iterable[CertRecord],
    *,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of ``revoked`` records signed by ``issuer_key``."""
    now = now or dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + CRL_VALIDITY)
        # Monotonic enough across restarts: milliseconds since the epoch.
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for record in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(record.serial)
            .revocation_date(record.revoked_at or now)
        )
        reason = _REASONS.get(record.reason)
        if reason is not None:  # RFC 5280: omit the extension for "unspecified"
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class CrlAuthority:
    """What the server needs to publish one CA's CRL."""

    name: str
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certdb: CertDB

    def crl(self) -> x509.CertificateRevocationList:
        return build_crl(self.certificate, self.key, self.certdb.records(status="revoked"))


def load_spec(path: Path) -> dict[str, CrlAuthority]:
    spec: Mapping[str, Mapping[str, str]] = json.loads(path.read_text())
    authorities: dict[str, CrlAuthority] = {}
    for name, entry in spec.items():
        cert = x509.load_pem_x509_certificate(Path(entry["cert"]).read_bytes())
        key = serialization.load_pem_private_key(Path(entry["key"]).read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"{name}: CA key must be RSA or ECDSA")
        certdb = open_certdb(entry["certdb"], password_file=entry.get("certdb_password_file"))
        authorities[name] = CrlAuthority(name, cert, key, certdb)
    return authorities


def _handler(authorities: Mapping[str, CrlAuthority]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].strip("/")
            if path == "healthz":
                self._reply(200, b"ok", "text/plain")
                return
            pem = path.endswith(".crl.pem")
            name = path.removesuffix(".pem").removesuffix(".crl")
            authority = authorities.get(name)
            if authority is None or not (pem or path.endswith(".crl")):
                self._reply(404, b"no such CRL", "text/plain")
                return
            try:
                crl = authority.crl()
            except CertDBError as exc:
                self._reply(503, str(exc).encode(), "text/plain")
                return
            if pem:
                body = crl.public_bytes(serialization.Encoding.PEM)
                self._reply(200, body, "application/x-pem-file")
            else:
                body = crl.public_bytes(serialization.Encoding.DER)
                self._reply(200, body, "application/pkix-crl")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("crl %s", format % args)

    return Handler


def serve(
    authorities: Mapping[str, CrlAuthority], host: str, port: int
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve in a daemon thread (used in-process by tests); returns the server and thread."""
    server = ThreadingHTTPServer((host, port), _handler(authorities))
    thread = threading.Thread(target=server.serve_forever, name="crl-server", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = ThreadingHTTPServer((args.host, args.port), _handler(load_spec(args.spec)))
    log.info("crl server listening on %s:%d", args.host, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
