"""The connector API client (see the package's docstring for how it is used)."""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Sequence
from typing import Any

import httpx
from cryptography import x509

from connector._http import LeanClient
from connector.service_client._errors import BadRequest, ServiceError, ServiceUnavailable
from connector.service_client._models import (
    CertificateRequest,
    Intent,
    Polled,
    Registration,
    RevocationTask,
    UploadItem,
    intent_from_json,
    request_from_json,
    superseded_from_json,
    uncertain_from_json,
)
from connector.service_client._wire import Item, chunks, decode, load_cert, tls_context

__all__ = ["API_PREFIX", "ServiceClient"]

API_PREFIX = "/api/v1/connector"
# Long polls are answered by the service within wait_s; the socket may take
# that long plus the ordinary timeout.
_LONG_POLL_SLACK_S = 5.0
# How long a registration waits for a keep-warm round still out (its probes answer in
# one round trip; a new connection costs TCP's and TLS's round trips on top).
_WARM_WAIT_S = 1.0
# Batched results are split to stay well under the service's 1 MiB body limit.
_BATCH_BODY_BYTES = 512 * 1024


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
        self._http = LeanClient(
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
            load_cert(self._ssl, self._cert)
            self._http.close()  # drop kept-alive connections made with the old one
            self._http = LeanClient(
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
        self,
        name: str,
        epoch: int,
        *,
        max_items: int = 0,
        timeout: float | None = None,
        received: int | None = None,
        superseded_within_s: float = 0.0,
    ) -> Registration:
        """Claim "active" for ``epoch``; the answer carries the stale intents and, with
        ``max_items``, a first poll of that many requests (leased to this epoch;
        ``received`` as :meth:`poll_work`'s: 0 when this epoch received nothing yet);
        with ``superseded_within_s``, the keys of intents given up on that recently, and
        of deliveries that recent another CA may still sign late.

        A keep-warm round still out holds the warm connections for a round trip: the
        registration waits for it (at most ``_WARM_WAIT_S``) rather than make a new
        connection, which costs a round trip or two more over a WAN.
        """
        if self._warming.acquire(timeout=_WARM_WAIT_S):
            self._warming.release()
        payload: dict[str, Any] = {"name": name, "epoch": epoch}
        if max_items:
            payload["max_items"] = max_items
        if received is not None:
            payload["received"] = received
        if superseded_within_s > 0:
            payload["superseded_within_s"] = superseded_within_s
        body = self._call("POST", "/register", payload, timeout=timeout)
        return Registration(
            intents=[intent_from_json(item) for item in body.get("intents", [])],
            requests=[request_from_json(item) for item in body.get("requests", [])],
            lease_seq=_optional_int(body.get("lease_seq")),
            superseded=[superseded_from_json(item) for item in body.get("superseded", [])],
            uncertain=[uncertain_from_json(item) for item in body.get("uncertain", [])],
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
        return self.poll_work(name, epoch, max_items, wait_s, timeout=timeout).requests

    def poll_work(
        self,
        name: str,
        epoch: int,
        max_items: int,
        wait_s: float,
        *,
        timeout: float | None = None,
        received: int | None = None,
    ) -> Polled:
        """:meth:`poll_requests`, with the counts of what waits at the service.

        ``received``: the :attr:`Polled.lease_seq` of the last answer this epoch got.
        Requests a later answer leased (one lost on the way) are leased again now."""
        payload: dict[str, Any] = {
            "name": name,
            "epoch": epoch,
            "max_items": max_items,
            "wait_s": wait_s,
        }
        if received is not None:
            payload["received"] = received
        body = self._call(
            "POST",
            "/requests/poll",
            payload,
            timeout=wait_s
            + (timeout if timeout is not None else self._timeout + _LONG_POLL_SLACK_S),
        )
        return Polled(
            requests=[request_from_json(item) for item in body["requests"]],
            revocations_waiting=_optional_int(body.get("revocations_waiting")),
            lease_seq=_optional_int(body.get("lease_seq")),
        )

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
        *,
        uncertain: bool = False,
    ) -> None:
        """``uncertain``: another CA may also have signed this key (see :class:`UploadItem`)."""
        body = {"name": name, "epoch": epoch, **_result(envelope, serial, ca_name, uncertain)}
        self._call("POST", f"/requests/{request_id}/result", body)

    def record_intents(
        self, name: str, epoch: int, intents: Sequence[tuple[str, str]]
    ) -> dict[str, BadRequest | None]:
        """Intents ``(request_id, public_key_pem)`` in one call: per request, None when
        recorded or the :class:`BadRequest` that one item got. A refusal of the whole
        call (409, 5xx, ...) raises as :meth:`record_intent` would."""
        items: list[Item] = [{"request_id": rid, "public_key_pem": pem} for rid, pem in intents]
        return self._batch("/requests/intents", name, epoch, items)

    def upload_results(
        self, name: str, epoch: int, results: Sequence[UploadItem]
    ) -> dict[str, BadRequest | None]:
        """Results in as few calls as the service's body limit allows; per request as
        :meth:`record_intents`."""
        items: list[Item] = [
            {"request_id": r.request_id, **_result(r.envelope, r.serial, r.ca_name, r.uncertain)}
            for r in results
        ]
        outcomes: dict[str, BadRequest | None] = {}
        for chunk in chunks(items, _BATCH_BODY_BYTES):
            outcomes.update(self._batch("/requests/results", name, epoch, chunk))
        return outcomes

    def _batch(
        self, path: str, name: str, epoch: int, items: list[Item]
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
        return [intent_from_json(item) for item in body["intents"]]

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
                self._http.url_for(API_PREFIX + path),
                json=payload,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return decode(method, path, response)


def _optional_int(value: object) -> int | None:
    """An integer the service may leave out (an older service): anything else is None."""
    return value if type(value) is int else None


def _result(envelope: bytes, serial: int, ca_name: str, uncertain: bool) -> dict[str, Any]:
    """One result's fields, as the single and the batched upload send them."""
    fields: dict[str, Any] = {
        "envelope_b64": base64.b64encode(envelope).decode("ascii"),
        # Decimal string: serials are up to 160 bits, beyond JSON's safe integers.
        "serial": str(serial),
        "ca_name": ca_name,
    }
    if uncertain:
        fields["uncertain"] = True
    return fields
