"""The fault proxy on loopback echo servers: pass, delay, drop answers, reset."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from chaos.launch import wait_for
from chaos.launch.proxy import FaultProxy, LinkFaults, Toxics


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.server.received += len(data)  # type: ignore[attr-defined]
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    server.received = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(echo) as running:
        yield running


def _connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def _round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_passes_bytes_both_ways_unchanged(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _round_trip(sock, b"x" * 200_000) == b"x" * 200_000
    assert proxy.stats.forwarded_bytes >= 400_000


def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    proxy.set(LinkFaults(up=Toxics(latency_s=0.1), down=Toxics(latency_s=0.1)))
    with _connect(proxy) as sock:
        started = time.monotonic()
        assert _round_trip(sock, b"ping") == b"ping"
        # Both legs are delayed: the round trip cannot be shorter than their sum.
        assert time.monotonic() - started >= 0.2


def test_a_blackholed_answer_is_held_while_the_request_arrives(
    proxy: FaultProxy, echo: tuple[str, int]
) -> None:
    proxy.set(LinkFaults(down=Toxics(blackhole=True)))
    with _connect(proxy) as sock:
        sock.settimeout(0.3)
        sock.sendall(b"sign this")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        # The echo's answer reaches the proxy when it does (a loaded machine can take
        # longer than the 0.3 s above): wait for it, with a deadline.
        wait_for(
            lambda: proxy.stats.held_bytes == len(b"sign this"),
            timeout=5.0,
            what="the echoed answer held by the proxy",
        )
        # Lifted: the stream goes on intact, as TCP retransmits over a healed link.
        proxy.clear()
        sock.settimeout(2)
        received = b""
        while len(received) < len(b"sign this"):
            chunk = sock.recv(64)
            assert chunk, "closed instead of delivering what was held"
            received += chunk
        assert received == b"sign this"
    assert proxy.stats.discarded_bytes == 0


def _until_reset(proxy: FaultProxy, sock: socket.socket | None) -> None:
    """Talk until the proxy's reset arrives (it lands asynchronously); end of stream fails."""
    sock = sock or _connect(proxy)
    with sock:
        for _ in range(50):
            sock.sendall(b"b")
            if not sock.recv(10):
                raise AssertionError("closed in order, not reset")
            time.sleep(0.02)


def test_reset_ends_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    sock = _connect(proxy)
    assert _round_trip(sock, b"a") == b"a"
    proxy.set(LinkFaults(reset=True))
    with pytest.raises(ConnectionResetError):
        _until_reset(proxy, sock)
    with pytest.raises(ConnectionResetError):  # at connect, send or receive: all are resets
        _until_reset(proxy, None)
    proxy.clear()
    with _connect(proxy) as fresh:
        assert _round_trip(fresh, b"ok") == b"ok"


def test_toxics_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        Toxics(latency_s=-1)
    with pytest.raises(ValueError, match="jitter"):
        Toxics(latency_s=0.01, jitter_s=0.02)


def test_what_a_side_sent_into_a_blackhole_before_closing_never_arrives(
    proxy: FaultProxy, echo: tuple[str, int]
) -> None:
    proxy.set(LinkFaults(up=Toxics(blackhole=True), down=Toxics(blackhole=True)))
    with _connect(proxy) as sock:
        sock.sendall(b"late request")
        deadline = time.monotonic() + 2
        while proxy.stats.held_bytes < len(b"late request") and time.monotonic() < deadline:
            time.sleep(0.01)
    # The client gave up (closed) while held: lifting the cut must not deliver it.
    deadline = time.monotonic() + 2
    while proxy.stats.discarded_bytes < len(b"late request") and time.monotonic() < deadline:
        time.sleep(0.01)
    proxy.clear()
    with _connect(proxy) as fresh:
        assert _round_trip(fresh, b"ok") == b"ok"
    assert proxy.stats.discarded_bytes == len(b"late request")
