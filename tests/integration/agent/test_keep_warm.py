"""A standby keeps service connections open for a takeover: ServiceClient.keep_warm.

A loopback HTTP server answers slowly enough that the probes overlap, and counts
the client ports it sees: keep_warm(3) opens three connections, and the next round
reuses them rather than opening new ones (no handshake left for the takeover).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connector.service_client import ServiceClient


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ports: list[int] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def do_GET(self) -> None:
        time.sleep(0.2)  # the probes of one round overlap
        with self.server.lock:
            self.server.ports.append(self.client_address[1])
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _served(server: _Server, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with server.lock:
            if len(server.ports) >= count:
                return list(server.ports)
        time.sleep(0.02)
    raise AssertionError(f"{len(server.ports)} of {count} probes served in 10 s")


def test_keep_warm_opens_connections_and_the_next_round_reuses_them(server: _Server) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with ServiceClient(url, timeout=5) as client:
        assert client.keep_warm(3)
        assert not client.keep_warm(3)  # a round still out is not doubled
        first = _served(server, 3)
        assert len(set(first)) == 3
        deadline = time.monotonic() + 10
        while not client.keep_warm(3):  # starts once the first round has ended
            assert time.monotonic() < deadline, "the first round never ended"
            time.sleep(0.02)
        both = _served(server, 6)
        assert len(both) == 6  # the second call made no extra round
        assert set(both) == set(first)  # kept alive: no new connection, no new handshake
