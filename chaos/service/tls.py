"""The client certificate into the ASGI scope, and a cap on connections per client.

uvicorn verifies a client certificate during the handshake (``ssl_ca_certs``,
``CERT_OPTIONAL``) but does not tell the application which one was shown.
:func:`peer_cert_protocol` (httptools, or h11) reads it from the TLS transport once per
connection and puts it where the ASGI TLS extension says it goes::

    scope["extensions"]["tls"]["client_cert_chain"]   # [PEM of the leaf] or []

Slow clients (issue 18). A request head (request line and headers) must be
complete within ``header_timeout_s`` of the connection opening, or of the
previous response on a kept-alive connection, else the connection is closed
(uvicorn itself has no such timeout: a client dribbling a header byte every
few seconds held a connection for ever). A client (its address, plus its
certificate when it showed one) holds at most ``max_per_client`` connections;
when a new one would pass the cap, one of the client's connections that is not
being served is closed to make room: the oldest that never sent a complete
head, else the oldest idle between requests, else the oldest whose body is
still arriving. Only when every one is being served (its whole request in, its
answer not yet sent: a long poll) is the new one refused. So
slow or idle anonymous connections never lock out an admin, a device, a
Prometheus scrape or /healthz from the same address::

    config = uvicorn.Config(app, http=peer_cert_protocol(64, header_timeout_s=10), ...)
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # httptools parses HTTP in C; h11 is pure Python (several times the CPU per call)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a declared dependency
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

__all__ = [
    "PeerCertH11Protocol",
    "PeerCertHttpToolsProtocol",
    "client_certificate_pem",
    "peer_cert_protocol",
]


def client_certificate_pem(scope: dict[str, Any]) -> str | None:
    """The verified client certificate of this request (PEM), or None."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return str(chain[0]) if chain else None


class _PeerCert:
    """Mixed into a uvicorn HTTP protocol class (h11 or httptools)."""

    max_per_client: int = 0  # 0: no cap
    header_timeout_s: float = 0.0  # 0: no header timeout
    _clients: dict[str, list[_PeerCert]] = {}
    app: Any
    client: tuple[str, int] | None
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    @classmethod
    def limited(cls, max_per_client: int, header_timeout_s: float = 0.0) -> type[Any]:
        """A subclass with its own connection table, cap and header timeout."""
        return type(
            f"Limited{cls.__name__}",
            (cls,),
            {
                "max_per_client": max_per_client,
                "header_timeout_s": header_timeout_s,
                "_clients": {},
            },
        )

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._busy = False  # serving a request: from its complete body to its response
        self._started = False  # a request head is in (its body may still be arriving)
        self._kept_alive = False  # it has answered a request and stayed open
        self._head_timer: asyncio.TimerHandle | None = None
        self._peer_key: str | None = None
        extension: dict[str, Any] = {"client_cert_chain": [], "server_cert": None}
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if ssl_object is not None:
            if der:
                extension["client_cert_chain"] = [ssl.DER_cert_to_PEM_cert(der)]
            extension["tls_version"] = ssl_object.version()
        # A client is its address and, when it showed one, its (verified)
        # certificate: on a shared address (loopback, NAT) every connector keeps
        # its own quota, and anonymous callers share theirs.
        peer = self.client[0] if self.client else "?"
        if der:
            peer += "|" + hashlib.sha256(der).hexdigest()[:16]
        held = self._clients.setdefault(peer, [])
        if self.max_per_client and len(held) >= self.max_per_client:
            victim = _eviction_victim(held)
            if victim is None:
                transport.close()
                return
            victim._drop()
        self._peer_key = peer
        held.append(self)
        self._arm_head_timer()
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            self._cancel_head_timer()  # the body timeout (chaos.service.limits) takes over
            self._started = True

            async def receiving() -> Any:
                message = await receive()
                if message.get("type") == "http.request" and not message.get("more_body"):
                    self._busy = True  # the whole request is in: now it is being served
                return message

            scope.setdefault("extensions", {})["tls"] = extension
            await inner(scope, receiving, send)

        self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._busy = False
        self._started = False
        self._kept_alive = True
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        if self.header_timeout_s > 0:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._busy:
            self._drop()

    def _drop(self) -> None:
        """Close this connection now and free its place in the client's quota."""
        self._forget()
        if not self.transport.is_closing():
            self.transport.close()

    def _forget(self) -> None:
        self._cancel_head_timer()
        peer, self._peer_key = getattr(self, "_peer_key", None), None
        if peer is None:
            return
        held = self._clients.get(peer, [])
        if self in held:
            held.remove(self)
        if not held:
            self._clients.pop(peer, None)


def _eviction_victim(held: list[_PeerCert]) -> _PeerCert | None:
    """The connection to close for a newcomer, or None when every one is being served.

    First one that never got a request head in (a slow or silent opener), then one
    idle between requests, then one whose body is still arriving; oldest first within
    each. A request whose head is in may already be running: closing it loses the
    answer of work the service does anyway (a drill's device enrolled, its client saw
    "Server disconnected" while 256 anonymous openers shared its address).
    """
    waiting = [c for c in held if not c._busy]
    if not waiting:
        return None
    return min(waiting, key=lambda c: (c._started, c._kept_alive))  # min() keeps the oldest


class PeerCertH11Protocol(_PeerCert, H11Protocol):  # type: ignore[misc]
    """The pure-Python h11 parser with the peer certificate and the connection cap."""


if HttpToolsProtocol is not None:

    class PeerCertHttpToolsProtocol(_PeerCert, HttpToolsProtocol):  # type: ignore[misc]
        """The httptools (C) parser with the peer certificate and the connection cap."""

else:  # pragma: no cover
    PeerCertHttpToolsProtocol = PeerCertH11Protocol  # type: ignore[misc,assignment]


def peer_cert_protocol(max_per_client: int, header_timeout_s: float = 0.0) -> type[Any]:
    """The fastest available protocol class, with its own connection cap and header
    timeout (0: none)."""
    return PeerCertHttpToolsProtocol.limited(max_per_client, header_timeout_s)
