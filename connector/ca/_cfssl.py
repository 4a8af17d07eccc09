"""The CFSSL backend of :class:`~connector.ca.IssuingCA`, over httpx.

    ca = CfsslCA("primary", "http://127.0.0.1:8888", auth_key_hex,
                 certificate=issuing_ca_cert, parents=[root_cert],
                 certdb=PostgresCertDB(dsn, password_file=path),
                 crl_url="http://127.0.0.1:8080/primary.crl")
    issued = ca.issue(csr, "user-auth", request_id="r1", timeout=2.0)
    ca.revoke(issued.serial, "superseded")
    ca.find(key.public_key())             # from the certdb (read-only role, over TCP)
    ca.probe_certdb()                     # ReconcileState(ca, "certdb", ready, detail)

    CfsslCA.from_dict(lab.describe()["cas"]["primary"])   # the lab's description
    CfsslCA.from_dict({..., "url": "https://ca1:8888", "ca_file": "ca-tls.pem"})  # TLS
    CfsslCA.from_dict({..., "client_certificate": "c1.pem", "client_key_file": "c1-key.pem"})

Issuance uses the authenticated endpoint ``/api/v1/cfssl/authsign``: the
request JSON is sent base64-encoded with ``token = HMAC-SHA256(auth key,
request bytes)``. Revocation uses ``/api/v1/cfssl/revoke`` with the decimal
serial and the AKI as the certdb stores it (empty in the Debian 1.2 build);
that endpoint has no authentication in CFSSL 1.2 (nor have ``newcert``,
``certinfo``, ``scan``, ``init_ca``), so CFSSL runs with mutual TLS and a CN
allow-list (docs/pki.md, "Mutual TLS to the CA"): the client presents this
connector's own certificate (``client_certificate`` + ``client_key_file``).
A CA that refuses it answers ``Invalid CN`` (:class:`CAAuthError`: this
connector's CA access was revoked, or its name is not on the list). Every
certificate returned is validated before it is handed out
(:func:`connector.pki.validate_issued`).

Without a certdb the CA cannot be searched, and :meth:`CfsslCA.find` says so
(:class:`CAUnavailableError`) rather than answer "nothing issued": a
reconciliation that silently finds nothing leaves a deposed leader's orphans
valid. Only ``reconcile="off"``, the operator's explicit choice, makes it
answer ``[]`` (and :meth:`CfsslCA.reconcile_state` reports ``off``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from connector._http import LeanClient
from connector.ca._abort import aborting_transport
from connector.ca._accept import accept_issued
from connector.ca._certdb import CertDB, CertDBError, open_certdb
from connector.ca._errors import (
    CAAuthError,
    CABadResponseError,
    CAError,
    CANotFoundError,
    CAPermanentError,
    CARequestRejectedError,
    CAUnavailableError,
)
from connector.ca._profiles import STANDARD_PROFILES, CaProfile
from connector.ca._reload import cfssl_material
from connector.ca._revocation import parse_crl
from connector.ca._types import CertStatus, IssuedCertificate, ReconcileState, normalise_reason
from connector.pki.validate import validate_chain

__all__ = ["RECONCILE_MODES", "CfsslCA", "tls_context"]

# "certdb": find by reading the CA's certdb; "off": the operator's explicit opt-out.
RECONCILE_MODES = ("certdb", "off")

log = logging.getLogger("pfxha.connector.ca")

# CFSSL error categories (code // 1000) that say the CA, not the request, is in trouble.
_RETRYABLE_CATEGORIES = {6, 8, 11}  # dial, OCSP, certstore (database)


def tls_context(spec: Mapping[str, Any]) -> ssl.SSLContext | bool:
    """How to reach the CA of ``spec`` (``ca_file``, ``client_certificate``, ``client_key_file``).

    An https:// CA is verified against ``ca_file`` when given (httpx's default is
    certifi's public CAs, not the system store); with a client pair the context
    presents it (CFSSL's mutual TLS).
    """
    ca_file = spec.get("ca_file")
    client_cert, client_key = spec.get("client_certificate"), spec.get("client_key_file")
    if bool(client_cert) != bool(client_key):
        raise ValueError(
            f"CA {spec.get('name')}: client_certificate and client_key_file go together"
        )
    if not ca_file and not client_cert:
        return True
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if client_cert:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


class CfsslCA:
    """One CFSSL ``serve`` instance as an issuing CA."""

    def __init__(
        self,
        name: str,
        url: str,
        auth_key: str,
        *,
        certificate: x509.Certificate,
        parents: Sequence[x509.Certificate],
        certdb: CertDB | Path | str | None = None,
        certdb_password_file: Path | str | None = None,
        reconcile: str = "certdb",
        crl_url: str | None = None,
        profiles: Mapping[str, CaProfile] | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._name = name
        self.url = url.rstrip("/")
        try:
            self._auth_key = bytes.fromhex(auth_key.strip())
        except ValueError as exc:
            raise ValueError(f"CA {name}: auth key must be hex") from exc
        self._certificate = certificate
        self.chain: list[x509.Certificate] = [certificate, *parents]
        validate_chain(self.chain)
        if reconcile not in RECONCILE_MODES:
            raise ValueError(f"CA {name}: reconcile must be one of {RECONCILE_MODES}")
        self.reconcile = reconcile
        self.certdb: CertDB | None = (
            open_certdb(certdb, password_file=certdb_password_file)
            if isinstance(certdb, str | Path)
            else certdb
        )
        self.crl_url = crl_url
        self.profiles = dict(profiles if profiles is not None else STANDARD_PROFILES)
        self.timeout = timeout
        self._transport = transport
        self._http = self._client(verify)
        self._retired: list[httpx.Client] = []  # replaced by reload_auth, closed at close()

    @classmethod
    def from_dict(
        cls,
        spec: Mapping[str, Any],
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> CfsslCA:
        """From the lab's ``describe()["cas"][name]`` (or the same keys from a config)."""
        auth_key = spec.get("auth_key")
        if auth_key is None and spec.get("auth_key_file"):
            auth_key = Path(spec["auth_key_file"]).read_text().strip()
        if not auth_key:
            raise ValueError(f"CA {spec.get('name')}: auth_key or auth_key_file is required")
        certificate = x509.load_pem_x509_certificate(Path(spec["certificate"]).read_bytes())
        parents = x509.load_pem_x509_certificates(Path(spec["root"]).read_bytes())
        verify = tls_context(spec)
        return cls(
            str(spec["name"]),
            str(spec["url"]),
            str(auth_key),
            certificate=certificate,
            parents=parents,
            certdb=spec.get("certdb_dsn") or spec.get("certdb"),
            certdb_password_file=spec.get("certdb_password_file"),
            reconcile=str(spec.get("reconcile") or "certdb"),
            crl_url=spec.get("crl_url"),
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    def _client(self, verify: ssl.SSLContext | bool) -> LeanClient:
        # Connections given up on abort (RST): held bytes die with them (connector/ca/_abort.py).
        transport = self._transport or aborting_transport(verify=verify)
        return LeanClient(timeout=self.timeout, transport=transport, verify=verify)

    def reload_auth(self, spec: Mapping[str, Any]) -> tuple[str, ...]:
        """Re-read ``auth_key_file`` and the client pair of ``spec``; swap only if valid.

        :class:`~connector.ca.AuthMaterialError` names the refused setting (the old
        material stays). Calls already under way finish on the old client; the next
        one uses the new material. Returns the settings re-read.
        """
        material = cfssl_material(spec)
        http = self._client(material.verify)
        if material.auth_key is not None:
            self._auth_key = material.auth_key
        self._http, old = http, self._http
        self._retired.append(old)
        return material.settings

    def close(self) -> None:
        self._http.close()
        for old in self._retired:
            old.close()

    def __repr__(self) -> str:
        return f"CfsslCA({self._name!r}, {self.url!r})"

    # -- HTTP ----------------------------------------------------------------------------

    def _post(self, path: str, body: Mapping[str, Any], timeout: float | None) -> dict[str, Any]:
        effective = self.timeout if timeout is None else timeout
        if effective <= 0:
            raise CAUnavailableError(
                "no time left for the call (deadline passed)", ca_name=self.name
            )
        try:
            reply = self._http.post(
                self._http.url_for(f"{self.url}{path}"), json=body, timeout=effective
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise CAUnavailableError(f"cannot connect: {exc!r}", ca_name=self.name) from exc
        except httpx.HTTPError as exc:
            # Sent, but no answer: the CA may have acted on it.
            raise CAUnavailableError(
                f"no answer: {exc!r}", ca_name=self.name, ambiguous=True
            ) from exc
        if reply.status_code >= 500:
            raise CAUnavailableError(
                f"HTTP {reply.status_code}: {reply.text[:200]}", ca_name=self.name
            )
        if reply.text.strip() == "Invalid CN":
            # cfssl serve -mutual-tls-cn: our certificate's CN is not on the allow-list.
            raise CAAuthError(
                "refused our client certificate (Invalid CN): this connector's CA access "
                "was revoked or its name is not on the CA's allow-list",
                ca_name=self.name,
                code=reply.status_code,
            )
        try:
            parsed = reply.json()
        except ValueError as exc:
            raise CABadResponseError(
                f"HTTP {reply.status_code} with a body that is not JSON", ca_name=self.name
            ) from exc
        if not isinstance(parsed, dict) or "success" not in parsed:
            raise CABadResponseError("reply is not a CFSSL API response", ca_name=self.name)
        if not parsed.get("success"):
            raise self._classify(parsed.get("errors") or [], reply.status_code)
        return parsed

    def _classify(self, errors: Sequence[Any], status: int) -> CAError:
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = int(first.get("code", status) or status)
        message = str(first.get("message", f"HTTP {status}"))
        lowered = message.lower()
        if "token" in lowered or "authenticat" in lowered or status in (401, 403):
            return CAAuthError(f"refused our auth key: {message}", ca_name=self.name, code=code)
        if "not found" in lowered:
            return CANotFoundError(message, ca_name=self.name, code=code)
        if code // 1000 in _RETRYABLE_CATEGORIES:
            return CAUnavailableError(message, ca_name=self.name, code=code)
        return CARequestRejectedError(message, ca_name=self.name, code=code)

    def probe(self, *, timeout: float) -> None:
        """A cheap call with no side effect (``info``): returns, or raises a :class:`CAError`.

        Reachability only: a refusal (4xx, a CFSSL error) still proves the CA answers.
        """
        try:
            self._post("/api/v1/cfssl/info", {}, timeout)
        except (CAUnavailableError, CABadResponseError):
            raise
        except CAError:
            return

    # -- IssuingCA -----------------------------------------------------------------------

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        template: str,
        request_id: str,
        *,
        timeout: float | None = None,
    ) -> IssuedCertificate:
        profile = self.profiles.get(template)
        if profile is None:
            # CFSSL would quietly sign unknown profile names with its default profile.
            raise CARequestRejectedError(f"unknown template {template!r}", ca_name=self.name)
        request = json.dumps(
            {
                "certificate_request": csr.public_bytes(Encoding.PEM).decode("ascii"),
                "profile": template,
            }
        ).encode()
        token = hmac.new(self._auth_key, request, hashlib.sha256).digest()
        reply = self._post(
            "/api/v1/cfssl/authsign",
            {
                "token": base64.b64encode(token).decode(),
                "request": base64.b64encode(request).decode(),
            },
            timeout,
        )
        certificate = accept_issued(
            reply.get("result"), csr, self.chain, profile, ca_name=self.name, request_id=request_id
        )
        return IssuedCertificate.of(certificate, self.chain, self.name)

    def revoke(self, serial: int, reason: str, *, timeout: float | None = None) -> None:
        try:
            cfssl_reason = normalise_reason(reason)
        except ValueError as exc:
            raise CARequestRejectedError(str(exc), ca_name=self.name) from exc
        aki = ""  # what the Debian CFSSL 1.2 stores
        record = None
        if self.certdb is not None:
            try:
                record = self.certdb.by_serial(serial)
            except CertDBError:
                record = None  # the API still knows; let it answer
        if record is not None:
            if record.revoked:
                return  # idempotent: already revoked is done
            aki = record.aki
        self._post(
            "/api/v1/cfssl/revoke",
            {"serial": str(serial), "authority_key_id": aki, "reason": cfssl_reason},
            timeout,
        )

    def status(self, serial: int) -> CertStatus:
        if self.certdb is None:
            raise CAPermanentError("no certdb configured: status is unknown", ca_name=self.name)
        try:
            record = self.certdb.by_serial(serial)
        except CertDBError as exc:
            raise CAUnavailableError(str(exc), ca_name=self.name) from exc
        if record is None:
            return CertStatus.UNKNOWN
        return CertStatus.REVOKED if record.revoked else CertStatus.GOOD

    def crl(self, *, timeout: float | None = None) -> x509.CertificateRevocationList:
        if not self.crl_url:
            raise CAPermanentError("no CRL URL configured", ca_name=self.name)
        try:
            reply = self._http.get(
                self.crl_url, timeout=self.timeout if timeout is None else timeout
            )
        except httpx.HTTPError as exc:
            raise CAUnavailableError(f"CRL unreachable: {exc!r}", ca_name=self.name) from exc
        if reply.status_code != 200:
            raise CAUnavailableError(f"CRL: HTTP {reply.status_code}", ca_name=self.name)
        return parse_crl(reply.content, issuer=self.certificate, ca_name=self.name)

    def reconcile_state(self) -> ReconcileState:
        """How the last certdb call went (no I/O): what health and metrics show."""
        if self.reconcile == "off":
            return ReconcileState(self.name, "off", True, "reconcile = off: orphans not searched")
        if self.certdb is None:
            return ReconcileState(self.name, "certdb", False, "no certdb configured")
        error = self.certdb.last_error
        if error is not None:
            return ReconcileState(self.name, "certdb", False, f"{error.kind}: {error}")
        return ReconcileState(self.name, "certdb", True, self.certdb.source)

    def probe_certdb(self) -> ReconcileState:
        """Ask the certdb now (a read of ``certificates``); report as :meth:`reconcile_state`."""
        if self.reconcile != "off" and self.certdb is not None:
            with contextlib.suppress(CertDBError):
                self.certdb.ping()
        return self.reconcile_state()

    def certdb_indexed_rows(self) -> int:
        """Certificates of this CA's certdb whose key this process remembers (0: none)."""
        return 0 if self.certdb is None else self.certdb.indexed_rows

    def warm_certdb(self) -> int:
        """Learn the keys of certificates issued since the last search (no answer: 0)."""
        if self.reconcile == "off" or self.certdb is None:
            return 0
        try:
            return self.certdb.learn_new()
        except CertDBError:
            return 0  # probe_certdb reports it; a warm-up has nothing to add

    def find(self, public_key: PublicKeyTypes) -> list[IssuedCertificate]:
        """Every certificate this CA issued for ``public_key``, from its certdb.

        Raises :class:`CAUnavailableError` when the certdb cannot be searched
        (none configured, unreachable, credentials refused): "cannot tell" is
        never reported as "nothing issued".
        """
        return self.find_many([public_key])[0]

    def find_many(self, keys: Sequence[PublicKeyTypes]) -> list[list[IssuedCertificate]]:
        """:meth:`find` for several keys with one read of the certdb (a takeover's search)."""
        if self.reconcile == "off":
            return [[] for _ in keys]
        if self.certdb is None:
            raise CAUnavailableError(
                "no certdb configured: cannot search what this CA issued", ca_name=self.name
            )
        try:
            per_key = self.certdb.find_by_public_keys(keys)
        except CertDBError as exc:
            raise CAUnavailableError(str(exc), ca_name=self.name) from exc
        return [
            [
                IssuedCertificate.of(r.certificate, self.chain, self.name, status=r.status)
                for r in records
            ]
            for records in per_key
        ]
