"""An httpx transport over the standard library's HTTP/1.1, with a small kept-alive pool.

    transport = KeepAliveTransport(verify=context)          # an httpx.BaseTransport
    http = httpx.Client(transport=transport, timeout=5.0)
    http.post("https://ca1:8888/api/v1/cfssl/authsign", json=body)

    # a CA's: every socket resets (RST) when closed, see connector/ca/_abort.py
    KeepAliveTransport(verify=context, socket_options=[ABORT_ON_CLOSE])

Why: a leader makes a CA call per certificate and shares of batched service
calls, all HTTP/1.1 over mutual TLS to a handful of hosts, thousands an hour.
httpx's default transport (httpcore and h11) spends about a quarter of such a
call's CPU in Python bookkeeping around a few hundred bytes: trace hooks,
event objects, header re-validation, and a pool that scans every connection
it holds on each request. ``http.client`` does the same HTTP/1.1 exchange in
far fewer steps (measured: 1.21 against 0.88 ms of client CPU per call
over TLS, docs/connector.md). httpx stays the client: requests,
responses, timeouts and the exception tree callers rely on are httpx's.

What it keeps from httpcore's behaviour, because callers depend on it:

- the exception types, by phase: connecting (TCP and the TLS handshake)
  raises :class:`httpx.ConnectError` or :class:`httpx.ConnectTimeout`, so a
  caller knows nothing was sent; sending raises :class:`httpx.WriteError` or
  :class:`httpx.WriteTimeout`; waiting for the answer raises
  :class:`httpx.ReadTimeout`, :class:`httpx.ReadError` or
  :class:`httpx.RemoteProtocolError` (the request may have been acted on);
- the per-phase timeouts of the request (``connect``, ``write``, ``read``);
- kept-alive connections are checked before reuse: one idle past
  ``keepalive_expiry`` (5 s, as httpx and uvicorn) or that the server has
  closed (readable while idle) is dropped, never written to;
- a connection that failed, or that the server will close, is closed at once
  and not reused.

What it leaves out: HTTP/2, proxies, streaming (a request's body is read
whole, a generator's too, and sent as one chunk; an answer is read whole, and
ours are small). Idle connections are kept in a
last-in-first-out stack per origin, so under light load the most recent stay
warm and the rest age out; :meth:`KeepAliveTransport.close` closes them all.
"""

from __future__ import annotations

import http.client
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

__all__ = ["KeepAliveTransport", "SocketOption"]

SocketOption = tuple[int, int, int | bytes]

# DEBUG only, as httpcore logged: connections made and dropped, each exchange's status.
log = logging.getLogger("pfxha.connector.http")

_Origin = tuple[str, str, int]


@dataclass
class _Kept:
    connection: http.client.HTTPConnection
    idle_since: float


class KeepAliveTransport(httpx.BaseTransport):
    """HTTP/1.1 through :mod:`http.client`, connections kept alive per origin."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        socket_options: Sequence[SocketOption] = (),
        keepalive_expiry: float = 5.0,
        max_idle_per_origin: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(verify, ssl.SSLContext):
            self._ssl = verify
        else:
            self._ssl = httpx.create_ssl_context(verify=verify)
        self._socket_options = tuple(socket_options)
        self._expiry = keepalive_expiry
        self._max_idle = max_idle_per_origin
        self._clock = clock
        self._idle: dict[_Origin, list[_Kept]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- httpx.BaseTransport ---------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        # raw_host: the ASCII (IDNA) form, what DNS and SNI take.
        host = url.raw_host.decode("ascii")
        origin = (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = request.read()
        connection = self._take(origin) or self._connect(origin, request, timeouts.get("connect"))
        try:
            self._send(connection, request, body, timeouts.get("write"))
            answer, content = self._receive(connection, request, timeouts.get("read"))
        except BaseException as exc:
            log.debug("%s %s failed, connection dropped: %r", request.method, url, exc)
            connection.close()  # never reused: its state is unknown
            raise
        log.debug("%s %s -> %d", request.method, url, answer.status)
        if answer.will_close:
            connection.close()
        else:
            self._put_back(origin, connection)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.getheaders(),
            content=content,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": answer.reason.encode("ascii", "replace"),
            },
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            kept = [k for stack in self._idle.values() for k in stack]
            self._idle.clear()
        for item in kept:
            item.connection.close()

    # -- the pool ------------------------------------------------------------------

    def idle_connections(self) -> int:
        """How many kept-alive connections wait for a request (all origins)."""
        with self._lock:
            return sum(len(stack) for stack in self._idle.values())

    def _take(self, origin: _Origin) -> http.client.HTTPConnection | None:
        """The most recently used idle connection still fit for a request, or None."""
        stale: list[http.client.HTTPConnection] = []
        found: http.client.HTTPConnection | None = None
        now = self._clock()
        with self._lock:
            stack = self._idle.get(origin)
            while stack:
                item = stack.pop()
                if now - item.idle_since < self._expiry and not _closed_by_peer(item.connection):
                    found = item.connection
                    break
                stale.append(item.connection)
        for connection in stale:
            log.debug("kept-alive connection to %s:%d dropped: expired or closed", *origin[1:])
            connection.close()
        return found

    def _put_back(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            stack = self._idle.setdefault(origin, [])
            if not self._closed and len(stack) < self._max_idle:
                stack.append(_Kept(connection, self._clock()))
                return
        connection.close()

    # -- one exchange, errors mapped to httpx's by phase ----------------------------------

    def _connect(
        self, origin: _Origin, request: httpx.Request, timeout: float | None
    ) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        elif scheme == "http":
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        try:
            connection.connect()
            assert connection.sock is not None
            for option in self._socket_options:
                connection.sock.setsockopt(*option)
        except TimeoutError as exc:  # socket.timeout is TimeoutError since Python 3.10
            connection.close()
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except OSError as exc:  # refused, unreachable, TLS handshake refused ...
            connection.close()
            raise httpx.ConnectError(str(exc), request=request) from exc
        log.debug("connected to %s:%d (%s)", host, port, scheme)
        return connection

    @staticmethod
    def _send(
        connection: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        timeout: float | None,
    ) -> None:
        assert connection.sock is not None
        try:
            connection.sock.settimeout(timeout)
            connection.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=True,  # httpx's headers carry Host and Accept-Encoding
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                connection.putheader(name, value)
            # httpx says "chunked" for a body of unknown length (a generator); the
            # body was read whole, and http.client frames it as one chunk then.
            chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
            connection.endheaders(body or None, encode_chunked=chunked)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "write timed out", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    @staticmethod
    def _receive(
        connection: http.client.HTTPConnection, request: httpx.Request, timeout: float | None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        assert connection.sock is not None
        try:
            connection.sock.settimeout(timeout)
            answer = connection.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except http.client.HTTPException as exc:  # disconnected, bad status line, cut short
            raise httpx.RemoteProtocolError(
                str(exc) or type(exc).__name__, request=request
            ) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return answer, content


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle connection the server closed (or wrote to): readable while nothing is asked."""
    sock = connection.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # bytes nobody asked for: the connection is out of step
    poller = select.poll()  # not select(): no limit on the descriptor's number
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True
