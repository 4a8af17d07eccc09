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

Errors map to the common tree and AppRole tokens are kept fresh by the base
class, :class:`~connector.ca._openbao_client.OpenBaoClient` (see there:
failover across the cluster's addresses, a cluster electing a new active
node, ambiguous answers). An electing cluster is waited for
``failover_patience_s`` (default 0: the router goes to the template's next CA
at once); a request whose answer was lost stays with this CA
(``hold_lost_answers``).

OpenBao has no search by public key: :meth:`OpenBaoCA.find` lists the mount's
serials, fetches each certificate it has not seen before (once: certificates
do not change) and compares public keys; matches are fetched again for their
current revocation state.
"""

from __future__ import annotations

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

from connector.ca._accept import accept_issued
from connector.ca._approle import AppRoleCredentials
from connector.ca._errors import (
    CABadResponseError,
    CAError,
    CANotFoundError,
    CARequestRejectedError,
    CAUnavailableError,
)
from connector.ca._openbao_client import RETRYABLE_STATUSES, OpenBaoClient
from connector.ca._profiles import STANDARD_PROFILES, CaProfile
from connector.ca._revocation import ocsp_request_der, parse_crl, parse_ocsp_response
from connector.ca._types import CertStatus, IssuedCertificate, ReconcileState, normalise_reason
from connector.pki.keys import KeyPolicyError, public_key_id
from connector.pki.validate import validate_chain

__all__ = ["DEFAULT_PATIENCE_S", "RETRYABLE_STATUSES", "OpenBaoCA", "colon_serial"]

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


class OpenBaoCA(OpenBaoClient):
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
        chain = [certificate, *parents]
        validate_chain(chain)  # before the client exists: a refused chain leaves nothing open
        super().__init__(
            name,
            urls,
            credentials,
            timeout=timeout,
            transport=transport,
            verify=verify,
            clock=clock,
        )
        self.mount = mount.strip("/")
        self._certificate = certificate
        self.chain: list[x509.Certificate] = chain
        self.role_prefix = role_prefix
        self.profiles = dict(profiles if profiles is not None else STANDARD_PROFILES)
        # Read by the router: how long an election is waited out before failover.
        self.failover_patience_s = failover_patience_s
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
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def crl_url(self) -> str:
        return f"{self.urls[self._preferred]}/v1/{self.mount}/crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.urls[self._preferred]}/v1/{self.mount}/ocsp"

    def __repr__(self) -> str:
        return f"OpenBaoCA({self._name!r}, {self.urls[0]!r}, mount={self.mount!r})"

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

    def _read_cert(
        self, serial: str, timeout: float | None, node: int | None = None
    ) -> tuple[x509.Certificate, bool]:
        reply = self._call("GET", f"{self.mount}/cert/{serial}", timeout=timeout, node=node)
        data = reply.get("data")
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

    def _list_serials(self, timeout: float | None, node: int | None = None) -> list[str]:
        try:
            reply = self._call("LIST", f"{self.mount}/certs", timeout=timeout, node=node)
        except CANotFoundError:
            return []  # an empty mount answers 404
        data = reply.get("data")
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise CABadResponseError("LIST certs carries no keys", ca_name=self.name)
        return [str(k) for k in keys]

    def find(self, public_key: PublicKeyTypes) -> list[IssuedCertificate]:
        """Every certificate this mount issued for ``public_key`` (see :meth:`find_many`)."""
        return self.find_many([public_key])[0]

    def find_many(self, keys: Sequence[PublicKeyTypes]) -> list[list[IssuedCertificate]]:
        """Per key, every certificate this mount issued for it: one LIST for them all,
        a fetch of each certificate not seen before, then each match's state now.

        Raises :class:`CAUnavailableError` when the mount cannot be listed: "cannot
        tell" is never reported as "nothing issued". Every read goes to the node
        that takes writes (:meth:`writer_node`) and to no other: a node that only
        believes it is active reads from a stale copy and may miss a certificate.
        """
        wanted = [public_key_id(key) for key in keys]
        with self._find_lock:
            node: int | None = None
            try:
                node = self.writer_node(timeout=None)
                for serial in self._list_serials(None, node):
                    if serial not in self._seen:
                        certificate, _ = self._read_cert(serial, None, node)
                        self._remember(serial, certificate)
                by_key: dict[str, list[str]] = {}
                for serial, (key_id, _) in self._seen.items():
                    by_key.setdefault(key_id, []).append(serial)
                found = [self._issued(by_key.get(key_id, []), node) for key_id in wanted]
            except CAError as exc:
                self._last_find_error = str(exc)
                if isinstance(exc, CAUnavailableError):
                    if node is not None:
                        self.forget_writer(node)
                    raise
                raise CAUnavailableError(
                    f"cannot search what this CA issued: {exc}", ca_name=self.name
                ) from exc
            self._last_find_error = None
            return found

    def _issued(self, serials: Sequence[str], node: int) -> list[IssuedCertificate]:
        """The certificates of ``serials`` this mount's issuer signed, with their state now."""
        found = []
        for serial in serials:
            certificate, revoked = self._read_cert(serial, None, node)
            if certificate.issuer != self.certificate.subject:
                continue  # another issuer of the same mount
            status = CertStatus.REVOKED if revoked else CertStatus.GOOD
            found.append(IssuedCertificate.of(certificate, self.chain, self.name, status=status))
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
