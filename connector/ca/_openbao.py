"""The OpenBao (or HashiCorp Vault) PKI backend of :class:`~connector.ca.IssuingCA`, over httpx.

    ca = OpenBaoCA("secondary", ["http://bao1:8200", "http://bao2:8200"], "pki_secondary",
                   AppRoleCredentials.from_files(role_id_file, secret_id_file),
                   certificate=issuing_ca_cert, parents=[root_cert])
    issued = ca.issue(csr, "user-auth", request_id="r1", timeout=2.0)   # sign/<role>
    ca.revoke(issued.serial, "superseded")       # by colon-hex serial; reasons are not kept
    ca.find(key.public_key())                    # LIST certs, compare public keys
    ca.crl(); ca.ocsp_status(issued.certificate) # both served by the CA, no token needed

    OpenBaoCA.from_dict(lab.describe()["cas"]["secondary"])   # kind = "openbao"

Issuance signs the connector's CSR at ``<mount>/sign/<role_prefix><template>``:
the role decides O/C, key usages, EKUs and the TTL; the CSR's CN, subject
serialNumber (the device ID) and SANs, URI SANs included, are kept when the
role allows them (docs/pki.md, "Pointing pfxha at an existing Vault or
OpenBao PKI"). Every certificate returned is validated against the configured
chain before it is handed out, as with CFSSL.

Errors map to the common tree: a connection refused, 307 (a Raft standby
pointing at an active node that may be gone: never followed), 429, 503 and
"active node not found" are :class:`CAUnavailableError` and the next address
of the cluster is tried within the same call; when no node serves but one
answered 307 or "active cluster node not found", the cluster is electing a new
active node: :class:`CAElectingError`. Nothing was signed, so by default
(``failover_patience_s = 0``) the router goes to the template's next CA at
once, as for a CA that is down; a ``[[ca]]`` that sets a patience is waited
for that long first. A 500/502/504 after the request
was sent is ambiguous (the CA may have signed), and such a request stays with
this CA whatever the patience (``hold_lost_answers``: no certdb outlives the
cluster, so only the cluster can say whether it signed); 403 with a fresh token is
:class:`CAAuthError` (policy), 400 "not found" :class:`CANotFoundError`, any
other 4xx :class:`CARequestRejectedError`.

Authentication is AppRole: a login gives a token, renewed at two thirds of
its lease and replaced by a new login when renewal is refused or a call is
answered 403 (a revoked or expired token). Secrets never reach a log line.

OpenBao has no search by public key: :meth:`OpenBaoCA.find` lists the mount's
serials, fetches each certificate it has not seen before (once: certificates
do not change) and compares public keys; matches are fetched again for their
current revocation state.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from connector.ca._abort import aborting_transport
from connector.ca._accept import accept_issued
from connector.ca._approle import AppRoleCredentials, Token, TokenAction, token_decision
from connector.ca._errors import (
    CAAuthError,
    CABadResponseError,
    CAElectingError,
    CAError,
    CANotFoundError,
    CAPermanentError,
    CARequestRejectedError,
    CARetryableError,
    CAUnavailableError,
)
from connector.ca._profiles import STANDARD_PROFILES, CaProfile
from connector.ca._reload import AuthMaterialError, openbao_material
from connector.ca._revocation import ocsp_request_der, parse_crl, parse_ocsp_response
from connector.ca._types import CertStatus, IssuedCertificate, ReconcileState, normalise_reason
from connector.pki.keys import KeyPolicyError, public_key_id
from connector.pki.validate import validate_chain

__all__ = ["DEFAULT_PATIENCE_S", "RETRYABLE_STATUSES", "OpenBaoCA", "colon_serial"]

log = logging.getLogger("pfxha.connector.ca")

# Answers that say "this node cannot serve now" (Raft election, sealed, rate limit):
# the request was not acted on, so the next address may be tried at once.
RETRYABLE_STATUSES = frozenset({307, 429, 503})
# Answers after which the CA may have acted: retryable, but ambiguous.
_AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
_NO_ACTIVE_NODE = "active cluster node not found"
# How long a cluster electing a new active node is waited for before the template's
# next CA is used. 0: at once. An "electing" answer means the request was not acted on,
# so the next CA cannot make a second certificate, and a Raft election took 2.9-4.9 s
# here with performance_multiplier = 1 (docs/pki.md, "Failover patience").
DEFAULT_PATIENCE_S = 0.0


def colon_serial(serial: int) -> str:
    """OpenBao's serial spelling: big-endian bytes as lowercase colon hex (``1a:2b:...``)."""
    if serial < 0:
        raise ValueError("a certificate serial is not negative")
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{byte:02x}" for byte in raw)


def _errors_text(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:300]
    return f"HTTP {reply.status_code}"


class OpenBaoCA:
    """One PKI mount of an OpenBao (or Vault) cluster as an issuing CA."""

    kind = "openbao"
    # Read by the router: a request whose answer was lost stays with this CA (held by
    # the agent) until the cluster can be searched for it; no certdb outlives it.
    hold_lost_answers = True

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        mount: str,
        credentials: AppRoleCredentials,
        *,
        certificate: x509.Certificate,
        parents: Sequence[x509.Certificate],
        role_prefix: str = "",
        profiles: Mapping[str, CaProfile] | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.monotonic,
        failover_patience_s: float = DEFAULT_PATIENCE_S,
    ) -> None:
        if not urls:
            raise ValueError(f"CA {name}: at least one OpenBao address is required")
        self._name = name
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.mount = mount.strip("/")
        self._credentials = credentials
        self._certificate = certificate
        self.chain: list[x509.Certificate] = [certificate, *parents]
        validate_chain(self.chain)
        self.role_prefix = role_prefix
        self.profiles = dict(profiles if profiles is not None else STANDARD_PROFILES)
        self.timeout = timeout
        # Read by the router: how long an election is waited out before failover.
        self.failover_patience_s = failover_patience_s
        self._clock = clock
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport or aborting_transport(verify=verify),
            verify=verify,
            follow_redirects=False,
        )
        self._token: Token | None = None
        self._token_lock = threading.Lock()
        self._preferred = 0  # index of the address that answered last
        self._seen: dict[str, tuple[str, x509.Certificate]] = {}  # serial -> (key id, cert)
        self._find_lock = threading.Lock()
        self._last_find_error: str | None = None

    @classmethod
    def from_dict(
        cls,
        spec: Mapping[str, Any],
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> OpenBaoCA:
        """From a ``[[ca]]`` table with ``kind = "openbao"`` (or the lab's description)."""
        name = str(spec["name"])
        for required in ("mount", "role_id_file", "secret_id_file"):
            if not spec.get(required):
                raise ValueError(f"ca[{name}].{required}: is required with kind = 'openbao'")
        urls = [str(spec["url"])]
        urls += [u.strip() for u in str(spec.get("cluster_urls") or "").split(",") if u.strip()]
        credentials = AppRoleCredentials.from_files(
            spec["role_id_file"],
            spec["secret_id_file"],
            mount=str(spec.get("approle_mount") or "approle"),
        )
        ca_file = spec.get("ca_file")
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        return cls(
            name,
            urls,
            str(spec["mount"]),
            credentials,
            certificate=x509.load_pem_x509_certificate(Path(spec["certificate"]).read_bytes()),
            parents=x509.load_pem_x509_certificates(Path(spec["root"]).read_bytes()),
            role_prefix=str(spec.get("role_prefix") or ""),
            failover_patience_s=float(
                DEFAULT_PATIENCE_S
                if spec.get("failover_patience_s") is None
                else spec["failover_patience_s"]
            ),
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

    @property
    def crl_url(self) -> str:
        return f"{self.urls[self._preferred]}/v1/{self.mount}/crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.urls[self._preferred]}/v1/{self.mount}/ocsp"

    def reload_auth(self, spec: Mapping[str, Any]) -> tuple[str, ...]:
        """Re-read ``role_id_file`` and ``secret_id_file``; swap only if they log in.

        Refused (:class:`~connector.ca.AuthMaterialError`, old credentials kept): a
        file missing, empty or not 0600, or a login with the new pair that OpenBao
        refuses. A cluster that cannot be reached cannot say: the new pair is taken
        (the next call logs in with it). Returns the settings re-read.
        """
        credentials = openbao_material(spec)
        try:
            token: Token | None = self._login(self.timeout, credentials)
        except CAAuthError as exc:
            raise AuthMaterialError("secret_id_file", f"OpenBao refused it: {exc}") from None
        except CARetryableError:
            token = None  # unverified: the next call logs in with it
        with self._token_lock:
            self._credentials = credentials
            self._token = token
        return ("role_id_file", "secret_id_file")

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"OpenBaoCA({self._name!r}, {self.urls[0]!r}, mount={self.mount!r})"

    # -- HTTP ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None,
        json: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call, tried on each address in turn while a node says "not me, not now"."""
        effective = self.timeout if timeout is None else timeout
        if effective <= 0:
            raise CAUnavailableError(
                "no time left for the call (deadline passed)", ca_name=self.name
            )
        deadline = self._clock() + effective
        problems: list[str] = []
        electing = False  # a node answered that the cluster has no active node now
        count = len(self.urls)
        for step in range(count):
            index = (self._preferred + step) % count
            left = deadline - self._clock()
            if left <= 0:
                break
            url = f"{self.urls[index]}/v1/{path}"
            try:
                reply = self._http.request(
                    method, url, json=json, content=content, headers=headers, timeout=left
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problems.append(f"{self.urls[index]}: cannot connect ({type(exc).__name__})")
                continue
            except httpx.HTTPError as exc:
                # Sent, but no answer: the CA may have acted on it.
                raise CAUnavailableError(
                    f"{self.urls[index]}: no answer: {exc!r}", ca_name=self.name, ambiguous=True
                ) from exc
            if reply.status_code in RETRYABLE_STATUSES:
                electing = electing or reply.status_code == 307
                where = reply.headers.get("location", "")
                problems.append(
                    f"{self.urls[index]}: HTTP {reply.status_code}"
                    + (f" to {where} (not followed)" if where else f": {_errors_text(reply)}")
                )
                continue
            if reply.status_code in _AMBIGUOUS_STATUSES:
                text = _errors_text(reply)
                if _NO_ACTIVE_NODE in text:
                    # A Raft election: nothing was done; another node may serve already.
                    electing = True
                    problems.append(f"{self.urls[index]}: HTTP {reply.status_code}: {text}")
                    continue
                raise CAUnavailableError(
                    f"{self.urls[index]}: HTTP {reply.status_code}: {text}",
                    ca_name=self.name,
                    code=reply.status_code,
                    ambiguous=True,
                )
            self._preferred = index
            return reply
        message = "; ".join(problems) or "deadline reached"
        if electing:
            raise CAElectingError(f"cluster electing an active node: {message}", ca_name=self.name)
        raise CAUnavailableError(message, ca_name=self.name)

    def _classify(self, reply: httpx.Response) -> CAError:
        text = _errors_text(reply)
        status = reply.status_code
        if status in (401, 403):
            return CAAuthError(
                f"HTTP {status} {text}: the AppRole's policy must allow this call "
                f"(docs/pki.md, 'minimal policy')",
                ca_name=self.name,
                code=status,
            )
        if status == 404 or "not found" in text.lower():
            return CANotFoundError(text, ca_name=self.name, code=status)
        return CARequestRejectedError(f"HTTP {status}: {text}", ca_name=self.name, code=status)

    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An authenticated call; one fresh login and retry when the token is refused."""
        for fresh in (False, True):
            token = self._current_token(timeout, force_login=fresh)
            reply = self._send(
                method, path, timeout=timeout, json=json, headers={"X-Vault-Token": token.value}
            )
            if reply.status_code == 403 and not fresh:
                log.info("ca=%s: token refused (HTTP 403); logging in again", self.name)
                continue
            if reply.status_code >= 400:
                raise self._classify(reply)
            if reply.status_code == 204 or not reply.content:
                return {}
            try:
                parsed = reply.json()
            except ValueError as exc:
                raise CABadResponseError(
                    f"HTTP {reply.status_code} with a body that is not JSON", ca_name=self.name
                ) from exc
            if not isinstance(parsed, dict):
                raise CABadResponseError("reply is not a JSON object", ca_name=self.name)
            return parsed
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the token -----------------------------------------------------------------------

    def _current_token(self, timeout: float | None, *, force_login: bool = False) -> Token:
        with self._token_lock:
            decision = token_decision(self._token, now=self._clock())
            action = TokenAction.LOGIN if force_login else decision.action
            if action is TokenAction.RENEW and self._token is not None:
                try:
                    self._token = self._renew(self._token, timeout)
                except CAPermanentError as exc:
                    log.info("ca=%s: token renewal refused (%s); logging in again", self.name, exc)
                    action = TokenAction.LOGIN
            if action is TokenAction.LOGIN:
                self._token = self._login(timeout)
            assert self._token is not None
            return self._token

    def _token_from(self, body: Mapping[str, Any], started: float) -> Token:
        auth = body.get("auth")
        value = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(auth, dict) or not isinstance(value, str) or not value:
            raise CABadResponseError("login answer carries no client token", ca_name=self.name)
        return Token(
            value=value,
            obtained_at=started,
            lease_s=float(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )

    def _login(self, timeout: float | None, credentials: AppRoleCredentials | None = None) -> Token:
        started = self._clock()
        credentials = credentials or self._credentials
        mount = credentials.mount
        reply = self._send(
            "POST", f"auth/{mount}/login", timeout=timeout, json=credentials.login_body()
        )
        if reply.status_code >= 400:
            raise CAAuthError(
                f"AppRole login at auth/{mount} refused (HTTP {reply.status_code}: "
                f"{_errors_text(reply)}): check role_id_file and secret_id_file",
                ca_name=self.name,
                code=reply.status_code,
            )
        return self._token_from(reply.json(), started)

    def _renew(self, token: Token, timeout: float | None) -> Token:
        started = self._clock()
        reply = self._send(
            "POST",
            "auth/token/renew-self",
            timeout=timeout,
            json={},
            headers={"X-Vault-Token": token.value},
        )
        if reply.status_code >= 400:
            raise self._classify(reply)
        renewed = self._token_from(reply.json(), started)
        if renewed.lease_s < 0.5 * token.lease_s:
            # Capped by the max TTL: a fresh login gives a full lease.
            raise CAAuthError("renewal capped by the token's max TTL", ca_name=self.name)
        return renewed

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
            raise CARequestRejectedError(f"unknown template {template!r}", ca_name=self.name)
        body = {
            "csr": csr.public_bytes(Encoding.PEM).decode("ascii"),
            "format": "pem",
            "exclude_cn_from_sans": True,
        }
        reply = self._call(
            "POST", f"{self.mount}/sign/{self.role_prefix}{template}", timeout=timeout, json=body
        )
        certificate = accept_issued(
            reply.get("data"), csr, self.chain, profile, ca_name=self.name, request_id=request_id
        )
        self._remember(colon_serial(certificate.serial_number), certificate)
        return IssuedCertificate.of(certificate, self.chain, self.name)

    def revoke(self, serial: int, reason: str, *, timeout: float | None = None) -> None:
        """Revoke by serial; already revoked is done. OpenBao keeps no reason code."""
        try:
            normalise_reason(reason)
        except ValueError as exc:
            raise CARequestRejectedError(str(exc), ca_name=self.name) from exc
        self._call(
            "POST",
            f"{self.mount}/revoke",
            timeout=timeout,
            json={"serial_number": colon_serial(serial)},
        )

    def _read_cert(self, serial: str, timeout: float | None) -> tuple[x509.Certificate, bool]:
        data = self._call("GET", f"{self.mount}/cert/{serial}", timeout=timeout).get("data")
        pem = data.get("certificate") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(pem, str) or not pem:
            raise CANotFoundError(f"no certificate with serial {serial}", ca_name=self.name)
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
        except ValueError as exc:
            raise CABadResponseError(
                f"cert/{serial} is not a certificate", ca_name=self.name
            ) from exc
        return certificate, bool(data.get("revocation_time"))

    def status(self, serial: int) -> CertStatus:
        try:
            _, revoked = self._read_cert(colon_serial(serial), None)
        except CANotFoundError:
            return CertStatus.UNKNOWN
        return CertStatus.REVOKED if revoked else CertStatus.GOOD

    def crl(self, *, timeout: float | None = None) -> x509.CertificateRevocationList:
        reply = self._send("GET", f"{self.mount}/crl", timeout=timeout)
        if reply.status_code != 200:
            raise CAUnavailableError(f"CRL: HTTP {reply.status_code}", ca_name=self.name)
        return parse_crl(reply.content, issuer=self.certificate, ca_name=self.name)

    def ocsp_status(
        self, certificate: x509.Certificate, *, timeout: float | None = None
    ) -> CertStatus:
        """Ask the mount's OCSP responder (RFC 6960 over POST) and verify its answer."""
        reply = self._send(
            "POST",
            f"{self.mount}/ocsp",
            timeout=timeout,
            content=ocsp_request_der(certificate, issuer=self.certificate),
            headers={"Content-Type": "application/ocsp-request"},
        )
        if reply.status_code != 200:
            raise CAUnavailableError(f"OCSP: HTTP {reply.status_code}", ca_name=self.name)
        return parse_ocsp_response(
            reply.content, certificate, issuer=self.certificate, ca_name=self.name
        )

    # -- reconciliation -----------------------------------------------------------------

    def _remember(self, serial: str, certificate: x509.Certificate) -> None:
        try:
            key_id = public_key_id(certificate.public_key())
        except KeyPolicyError:
            key_id = ""  # a key type pfxha never generates: never one of ours
        self._seen[serial] = (key_id, certificate)

    def _list_serials(self, timeout: float | None) -> list[str]:
        try:
            reply = self._call("LIST", f"{self.mount}/certs", timeout=timeout)
        except CANotFoundError:
            return []  # an empty mount answers 404
        data = reply.get("data")
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise CABadResponseError("LIST certs carries no keys", ca_name=self.name)
        return [str(k) for k in keys]

    def find(self, public_key: PublicKeyTypes) -> list[IssuedCertificate]:
        """Every certificate this mount issued for ``public_key`` (list, fetch new, compare).

        Raises :class:`CAUnavailableError` when the mount cannot be listed: "cannot
        tell" is never reported as "nothing issued".
        """
        wanted = public_key_id(public_key)
        with self._find_lock:
            try:
                for serial in self._list_serials(None):
                    if serial not in self._seen:
                        certificate, _ = self._read_cert(serial, None)
                        self._remember(serial, certificate)
                matches = [s for s, (key_id, _) in self._seen.items() if key_id == wanted]
                found = []
                for serial in matches:
                    certificate, revoked = self._read_cert(serial, None)
                    if certificate.issuer != self.certificate.subject:
                        continue  # another issuer of the same mount
                    status = CertStatus.REVOKED if revoked else CertStatus.GOOD
                    found.append(
                        IssuedCertificate.of(certificate, self.chain, self.name, status=status)
                    )
            except CAError as exc:
                self._last_find_error = str(exc)
                if isinstance(exc, CAUnavailableError):
                    raise
                raise CAUnavailableError(
                    f"cannot search what this CA issued: {exc}", ca_name=self.name
                ) from exc
            self._last_find_error = None
            return found

    def list_issued(self, *, timeout: float | None = None) -> list[IssuedCertificate]:
        """Every certificate of this mount's issuer, with its revocation state now.

        What an auditor (the drill's orphan and duplicate checkers) reads: LIST the
        serials, GET each (one call per certificate: OpenBao has no bulk read).
        """
        found = []
        for serial in self._list_serials(timeout):
            certificate, revoked = self._read_cert(serial, timeout)
            if certificate.issuer != self.certificate.subject:
                continue  # another issuer of the same mount
            status = CertStatus.REVOKED if revoked else CertStatus.GOOD
            found.append(IssuedCertificate.of(certificate, self.chain, self.name, status=status))
        return found

    def probe(self, *, timeout: float) -> None:
        """Reachability (work-aware leadership): the active node answers ``sys/health``.

        ``_send`` already treats a standby's 429/307 or a sealed 503 as "try the next
        node": an answer from any active node returns; none raises CAUnavailableError.
        """
        self._send("GET", "sys/health", timeout=timeout)

    def reconcile_state(self) -> ReconcileState:
        """How the last search went (no I/O)."""
        if self._last_find_error is not None:
            return ReconcileState(self.name, "api", False, self._last_find_error)
        return ReconcileState(self.name, "api", True, f"LIST {self.mount}/certs")

    def probe_certdb(self) -> ReconcileState:
        """List the mount now (what reconciliation needs first), then report."""
        try:
            self._list_serials(None)
        except CAError as exc:
            self._last_find_error = str(exc)
        else:
            self._last_find_error = None
        return self.reconcile_state()
