"""The client certificate into the ASGI scope, and a cap on connections per client.

uvicorn verifies a client certificate during the handshake (``ssl_ca_certs``,
``CERT_OPTIONAL``) but does not tell the application which one was shown.
:func:`peer_cert_protocol` (httptools, or h11) reads it from the TLS transport once per
connection and puts it where the ASGI TLS extension says it goes::

    scope["extensions"]["tls"]["client_cert_chain"]   # [PEM of the leaf] or []

It also refuses a connection (closes it at once) when the same client (its
address, plus its certificate when it showed one) already holds
``max_per_client`` open connections, so one slow or greedy client cannot use
up the server's sockets and starve the connectors::

    config = uvicorn.Config(app, http=peer_cert_protocol(64), ssl_...=...)
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import Counter
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
    _open: Counter[str] = Counter()
    app: Any
    client: tuple[str, int] | None

    @classmethod
    def limited(cls, max_per_client: int) -> type[Any]:
        """A subclass with its own counter and cap."""
        return type(
            f"Limited{cls.__name__}",
            (cls,),
            {"max_per_client": max_per_client, "_open": Counter()},
        )

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
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
        self._peer_key = peer
        self._open[peer] += 1
        if self.max_per_client and self._open[peer] > self.max_per_client:
            transport.close()
            return
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = extension
            await inner(scope, receive, send)

        self.app = app

    def connection_lost(self, exc: Exception | None) -> None:
        peer = getattr(self, "_peer_key", None)
        if peer is not None:
            self._open[peer] -= 1
            if self._open[peer] <= 0:
                del self._open[peer]
        super().connection_lost(exc)  # type: ignore[misc]


class PeerCertH11Protocol(_PeerCert, H11Protocol):  # type: ignore[misc]
    """The pure-Python h11 parser with the peer certificate and the connection cap."""


if HttpToolsProtocol is not None:

    class PeerCertHttpToolsProtocol(_PeerCert, HttpToolsProtocol):  # type: ignore[misc]
        """The httptools (C) parser with the peer certificate and the connection cap."""

else:  # pragma: no cover
    PeerCertHttpToolsProtocol = PeerCertH11Protocol  # type: ignore[misc,assignment]


def peer_cert_protocol(max_per_client: int) -> type[Any]:
    """The fastest available protocol class, with its own connection cap."""
    return PeerCertHttpToolsProtocol.limited(max_per_client)
