"""The connector's client for the cloud certificate service (connector API).

Every call that changes something carries the connector's name and its
fencing epoch (from ZooKeeper). The service refuses an epoch lower than the
highest it has seen with HTTP 409, which this client raises as
:class:`StaleEpochError`: the caller must stop acting at once and step down::

    client = ServiceClient("http://127.0.0.1:8443", timeout=5.0)
    kra = client.kra_certificate()                      # x509.Certificate to seal PFX to
    client.register("conn-a", epoch)                    # claims "active" for this epoch
    first = client.register("conn-a", epoch, max_items=8)   # and, in the same round trip,
    first.intents, first.requests                       # the stale intents and a first poll
    client.heartbeat("conn-a", epoch, "healthy", {"cas_up": 2})
    client.heartbeat("conn-b", 0, "healthy", {})        # epoch 0: a standby's heartbeat
    for stale in client.inflight_intents("conn-a", epoch):   # reconcile a deposed epoch
        ...  # revoke what the CA issued for stale.public_key_pem, then issue anew
    for req in client.poll_requests("conn-a", epoch, max_items=100, wait_s=10.0):
        key = generate(req.profile.key_type)
        client.record_intent("conn-a", epoch, req.id, public_key_pem)   # before the CA call
        ...  # CSR (subject serialNumber = req.device_id), issue at the CA, pack PFX
        client.upload_result("conn-a", epoch, req.id, seal(pfx, kra), serial, ca_name)
    for task in client.poll_revocations("conn-a", epoch, max_items=100):
        ...  # revoke task.serial at task.ca_name (already revoked counts as done)
        client.confirm_revocation("conn-a", epoch, task.id)

Errors: :class:`StaleEpochError` (409, fenced), :class:`ServiceUnavailable`
(connection failure, timeout or 5xx: retry later), :class:`BadRequest` (any
other 4xx: the call was wrong; retrying it unchanged will not help), all
subclasses of :class:`ServiceError`. The transport is injectable
(``httpx.MockTransport`` or ``httpx.HTTPTransport(uds=...)``); TLS settings
(``verify``, ``cert``) pass straight to httpx.

The PFX inside the envelope carries the private key, the certificate and its
chain, with no password (the KRA envelope is the protection); the
certificate's public key must be the one recorded as intent and its subject
must hold the device id in ``serialNumber``, or the upload is refused (4xx).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509

__all__ = [
    "API_PREFIX",
    "BadRequest",
    "CertificateRequest",
    "ConnectorRevokedError",
    "Intent",
    "ProfileSpec",
    "Registration",
    "RevocationTask",
    "ServiceClient",
    "ServiceError",
    "ServiceUnavailable",
    "StaleEpochError",
    "UploadItem",
    "tls_context",
]

API_PREFIX = "/api/v1/connector"
# Long polls are answered by the service within wait_s; the socket may take
# that long plus the ordinary timeout.
_LONG_POLL_SLACK_S = 5.0
# Batched results are split to stay well under the service's 1 MiB body limit.
_BATCH_BODY_BYTES = 512 * 1024


class ServiceError(Exception):
    """The service refused or could not answer a call; ``status`` is the HTTP status or None."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = message


class StaleEpochError(ServiceError):
    """HTTP 409: the epoch is lower than the highest the service has seen. Step down."""

    def __init__(self, message: str, *, highest_epoch: int | None = None) -> None:
        super().__init__(message, status=409)
        self.highest_epoch = highest_epoch


class ServiceUnavailable(ServiceError):  # noqa: N818 - the agreed contract name
    """Connection failure, timeout or 5xx: nothing is known to have changed; retry later."""


class BadRequest(ServiceError):  # noqa: N818 - the agreed contract name
    """Any other 4xx (400 refused input, 403 revoked, 404 unknown id, 422 schema, 428 ...)."""


class ConnectorRevokedError(BadRequest):
    """403 with ``connector_revoked: true``: an admin revoked this connector. Leave."""


@dataclass(frozen=True)
class ProfileSpec:
    """What the certificate must look like (from the PFX profile)."""

    id: str
    key_type: str  # rsa2048 | rsa3072 | rsa4096 | p256 | p384
    template: str
    subject_template: str  # e.g. "CN={{UserName}}"
    san_templates: tuple[str, ...]
    validity_days: int


@dataclass(frozen=True)
class CertificateRequest:
    """One certificate to issue for one device under one profile."""

    id: str
    device_id: str
    profile: ProfileSpec
    variables: dict[str, str] = field(default_factory=dict)  # UserName, DeviceId, ...
    kind: str = "new"  # new | renewal


@dataclass(frozen=True)
class UploadItem:
    """One result for :meth:`ServiceClient.upload_results`."""

    request_id: str
    envelope: bytes  # CMS EnvelopedData to the KRA, holding the PFX
    serial: int
    ca_name: str


@dataclass(frozen=True)
class RevocationTask:
    """Revoke ``serial`` (decimal) at the CA named ``ca_name`` with ``reason`` (RFC 5280 name)."""

    id: str
    serial: int
    ca_name: str
    reason: str
    request_id: str


@dataclass(frozen=True)
class Intent:
    """An intent recorded under an older epoch whose result never arrived."""

    request_id: str
    epoch: int
    public_key_pem: str
    spki_sha256: str
    cancelled: bool  # the request was cancelled meanwhile: revoke orphans, then fail it


@dataclass(frozen=True)
class Registration:
    """What :meth:`ServiceClient.register` read in the same round trip as it registered.

    ``intents`` as :meth:`ServiceClient.inflight_intents` would list them now (no older
    epoch can add one once this one is registered); ``requests`` a first poll.
    """

    intents: list[Intent] = field(default_factory=list)
    requests: list[CertificateRequest] = field(default_factory=list)


class ServiceClient:
    """Synchronous client for the connector API; one instance per connector process."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        verify: Any = True,
        cert: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._timeout = timeout
        self._cert = cert
        self._warming = threading.Lock()  # held while a keep_warm round is out
        self._ssl = tls_context(verify, cert)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            verify=self._ssl,
            headers=headers,
        )

    def close(self) -> None:
        self._http.close()

    def reload_client_certificate(self) -> None:
        """Present the (renewed) certificate files from now on: new connections use them."""
        if self._cert is not None and isinstance(self._ssl, ssl.SSLContext):
            _load_cert(self._ssl, self._cert)
            self._http.close()  # drop kept-alive connections made with the old one
            self._http = httpx.Client(
                base_url=self._http.base_url,
                timeout=self._timeout,
                verify=self._ssl,
                headers=self._http.headers,
            )

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------

    def kra_certificate(self) -> x509.Certificate:
        body = self._call("GET", "/kra-certificate")
        return x509.load_pem_x509_certificate(str(body["certificate_pem"]).encode())

    def probe(self, *, timeout: float) -> None:
        """An authenticated call with no side effect; :class:`ServiceUnavailable` if unreachable."""
        self._call("GET", "/kra-certificate", timeout=timeout)

    def keep_warm(self, connections: int, *, timeout: float | None = None) -> bool:
        """Keep up to ``connections`` TLS connections open and fresh; returns at once
        (False when the last round is still out: it is not doubled).

        A standby calls it with each heartbeat: that many probes go out side by side,
        each on a thread of its own, so the pool holds that many kept-alive connections
        (the service and httpx keep an idle one 5 s). A new leader's first calls, which
        run side by side, then find their connections and their TLS done: over a WAN a
        handshake costs a round trip or two.
        """
        if connections < 1 or not self._warming.acquire(blocking=False):
            return False
        left = [connections]
        lock = threading.Lock()

        def probe() -> None:
            try:
                self.probe(timeout=timeout if timeout is not None else self._timeout)
            except ServiceError:
                pass  # the heartbeat says whether the service answers
            finally:
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        self._warming.release()

        for i in range(connections):
            threading.Thread(target=probe, name=f"pfxha-warm-{i}", daemon=True).start()
        return True

    def register(
        self, name: str, epoch: int, *, max_items: int = 0, timeout: float | None = None
    ) -> Registration:
        """Claim "active" for ``epoch``; the answer carries the stale intents and, with
        ``max_items``, a first poll of that many requests (leased to this epoch)."""
        payload: dict[str, Any] = {"name": name, "epoch": epoch}
        if max_items:
            payload["max_items"] = max_items
        body = self._call("POST", "/register", payload, timeout=timeout)
        return Registration(
            intents=[_intent_from_json(item) for item in body.get("intents", [])],
            requests=[_request_from_json(item) for item in body.get("requests", [])],
        )

    def heartbeat(
        self,
        name: str,
        epoch: int,
        health: str,
        details: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> str:
        """Report health; returns the role the service shows (active | standby)."""
        body = self._call(
            "POST",
            "/heartbeat",
            {"name": name, "epoch": epoch, "health": health, "details": details},
            timeout=timeout,
        )
        return str(body["role"])

    def poll_requests(
        self,
        name: str,
        epoch: int,
        max_items: int,
        wait_s: float,
        *,
        timeout: float | None = None,
    ) -> list[CertificateRequest]:
        """Long-poll: the socket may take ``wait_s`` plus ``timeout`` (default: the
        client's, plus a slack for a busy service)."""
        body = self._call(
            "POST",
            "/requests/poll",
            {"name": name, "epoch": epoch, "max_items": max_items, "wait_s": wait_s},
            timeout=wait_s
            + (timeout if timeout is not None else self._timeout + _LONG_POLL_SLACK_S),
        )
        return [_request_from_json(item) for item in body["requests"]]

    def record_intent(self, name: str, epoch: int, request_id: str, public_key_pem: str) -> None:
        self._call(
            "POST",
            f"/requests/{request_id}/intent",
            {"name": name, "epoch": epoch, "public_key_pem": public_key_pem},
        )

    def upload_result(
        self,
        name: str,
        epoch: int,
        request_id: str,
        envelope: bytes,
        serial: int,
        ca_name: str,
    ) -> None:
        self._call(
            "POST",
            f"/requests/{request_id}/result",
            {
                "name": name,
                "epoch": epoch,
                "envelope_b64": base64.b64encode(envelope).decode("ascii"),
                # Decimal string: serials are up to 160 bits, beyond JSON's safe integers.
                "serial": str(serial),
                "ca_name": ca_name,
            },
        )

    def record_intents(
        self, name: str, epoch: int, intents: Sequence[tuple[str, str]]
    ) -> dict[str, BadRequest | None]:
        """Intents ``(request_id, public_key_pem)`` in one call: per request, None when
        recorded or the :class:`BadRequest` that one item got. A refusal of the whole
        call (409, 5xx, ...) raises as :meth:`record_intent` would."""
        items = [{"request_id": rid, "public_key_pem": pem} for rid, pem in intents]
        return self._batch("/requests/intents", name, epoch, items)

    def upload_results(
        self, name: str, epoch: int, results: Sequence[UploadItem]
    ) -> dict[str, BadRequest | None]:
        """Results in as few calls as the service's body limit allows; per request as
        :meth:`record_intents`."""
        items = [
            {
                "request_id": r.request_id,
                "envelope_b64": base64.b64encode(r.envelope).decode("ascii"),
                "serial": str(r.serial),
                "ca_name": r.ca_name,
            }
            for r in results
        ]
        outcomes: dict[str, BadRequest | None] = {}
        for chunk in _chunks(items, _BATCH_BODY_BYTES):
            outcomes.update(self._batch("/requests/results", name, epoch, chunk))
        return outcomes

    def _batch(
        self, path: str, name: str, epoch: int, items: list[dict[str, str]]
    ) -> dict[str, BadRequest | None]:
        body = self._call("POST", path, {"name": name, "epoch": epoch, "items": items})
        outcomes: dict[str, BadRequest | None] = {}
        for item in body["items"]:
            status = item.get("status")
            outcomes[str(item["id"])] = (
                None
                if status is None
                else BadRequest(
                    f"POST {path} [{item['id']}]: HTTP {status}: {item.get('reason')}",
                    status=int(status),
                )
            )
        missing = {str(i["request_id"]) for i in items} - outcomes.keys()
        if missing:
            raise ServiceUnavailable(f"POST {path}: no outcome for {sorted(missing)}")
        return outcomes

    def fail_request(
        self, name: str, epoch: int, request_id: str, reason: str, retryable: bool
    ) -> None:
        self._call(
            "POST",
            f"/requests/{request_id}/fail",
            {"name": name, "epoch": epoch, "reason": reason, "retryable": retryable},
        )

    def poll_revocations(
        self, name: str, epoch: int, max_items: int, wait_s: float = 0.0
    ) -> list[RevocationTask]:
        body = self._call(
            "POST",
            "/revocations/poll",
            {"name": name, "epoch": epoch, "max_items": max_items, "wait_s": wait_s},
            timeout=wait_s + self._timeout + _LONG_POLL_SLACK_S,
        )
        return [
            RevocationTask(
                id=str(item["id"]),
                serial=int(item["serial"]),
                ca_name=str(item["ca_name"]),
                reason=str(item["reason"]),
                request_id=str(item["request_id"]),
            )
            for item in body["revocations"]
        ]

    def confirm_revocation(self, name: str, epoch: int, revocation_id: str) -> None:
        self._call(
            "POST",
            f"/revocations/{revocation_id}/confirm",
            {"name": name, "epoch": epoch},
        )

    def inflight_intents(self, name: str, epoch: int) -> list[Intent]:
        body = self._call("POST", "/intents/stale", {"name": name, "epoch": epoch})
        return [_intent_from_json(item) for item in body["intents"]]

    # -- plumbing ------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            response = self._http.request(
                method,
                API_PREFIX + path,
                json=payload,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return _decode(method, path, response)


def tls_context(verify: Any = True, cert: Any = None) -> ssl.SSLContext | bool:
    """An SSLContext trusting ``verify`` (a CA file, a context, True: the system's, False)
    and presenting ``cert`` (``(cert_file, key_file)`` or one PEM file) for mutual TLS.

    httpx ignores ``cert`` when ``verify`` is a path, so the context is built here.
    """
    if cert is None and isinstance(verify, bool):
        return verify
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif isinstance(verify, (str, os.PathLike)):
        context = ssl.create_default_context(cafile=os.fspath(verify))
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context()
    if cert is not None:
        _load_cert(context, cert)
    return context


def _load_cert(context: ssl.SSLContext, cert: Any) -> None:
    if isinstance(cert, (str, os.PathLike)):
        context.load_cert_chain(os.fspath(cert))
    else:
        context.load_cert_chain(os.fspath(cert[0]), os.fspath(cert[1]))


def _chunks(items: list[dict[str, str]], limit: int) -> Iterator[list[dict[str, str]]]:
    """Consecutive runs of ``items`` whose JSON stays under ``limit`` bytes (one item at least)."""
    chunk: list[dict[str, str]] = []
    size = 0
    for item in items:
        length = sum(len(k) + len(v) + 8 for k, v in item.items())
        if chunk and size + length > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


def _decode(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise ServiceUnavailable(f"{method} {path}: answer is not a JSON object", status=status)
        return body
    reason = _reason(body) or response.reason_phrase
    message = f"{method} {path}: HTTP {status}: {reason}"
    if status == 409:
        highest = body.get("highest_epoch") if isinstance(body, dict) else None
        raise StaleEpochError(message, highest_epoch=highest if isinstance(highest, int) else None)
    if status >= 500:
        raise ServiceUnavailable(message, status=status)
    if status == 403 and isinstance(body, dict) and body.get("connector_revoked") is True:
        raise ConnectorRevokedError(message, status=status)
    raise BadRequest(message, status=status)


def _reason(body: object) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if detail is not None:
            return json.dumps(detail)[:500]
    return ""


def _request_from_json(item: dict[str, Any]) -> CertificateRequest:
    profile = item["profile"]
    return CertificateRequest(
        id=str(item["id"]),
        device_id=str(item["device_id"]),
        profile=ProfileSpec(
            id=str(profile["id"]),
            key_type=str(profile["key_type"]),
            template=str(profile["template"]),
            subject_template=str(profile["subject_template"]),
            san_templates=tuple(str(s) for s in profile["san_templates"]),
            validity_days=int(profile["validity_days"]),
        ),
        variables={str(k): str(v) for k, v in item["variables"].items()},
        kind=str(item.get("kind", "new")),
    )


def _intent_from_json(item: dict[str, Any]) -> Intent:
    return Intent(
        request_id=str(item["request_id"]),
        epoch=int(item["epoch"]),
        public_key_pem=str(item["public_key_pem"]),
        spki_sha256=str(item["spki_sha256"]),
        cancelled=bool(item["cancelled"]),
    )
