"""KeepAliveTransport against real loopback servers: reuse, staleness, errors by phase, TLS."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from chaos.launch.service import self_signed_loopback
from connector._http import LeanClient
from connector._transport import KeepAliveTransport, _closed_by_peer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b""
        while size := int(self.rfile.readline().strip(), 16):
            body += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk
        self.rfile.readline()  # the CRLF after the last (empty) chunk
        return body

    def do_POST(self) -> None:
        sent = json.loads(self._body() or b"{}")
        if self.path == "/silent":
            self.server.release.wait(10)  # never answers in time
            self.close_connection = True
            return
        if self.path == "/drop":
            self.close_connection = True  # closes without a word
            return
        body = json.dumps({"echo": sent, "path": self.path}).encode()
        self.send_response(201 if self.path == "/created" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/hangup":
            self.close_connection = True  # answers, then closes the kept-alive connection

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.release = threading.Event()
        self.hung_up = threading.Event()  # set once the server closed a connection
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        super().shutdown_request(request)
        self.hung_up.set()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _poll(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def server() -> Iterator[_Server]:
    with _serving(None) as srv:
        yield srv


@contextmanager
def _serving(context: ssl.SSLContext | None) -> Iterator[_Server]:
    srv = _Server(context)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def test_sequential_calls_share_one_connection_and_answers_arrive_whole(server: _Server) -> None:
    transport = KeepAliveTransport()
    with httpx.Client(transport=transport, timeout=5) as client:
        replies = [
            client.post(f"http://127.0.0.1:{server.port}/created", json={"n": n}) for n in range(5)
        ]
    assert [r.status_code for r in replies] == [201] * 5
    assert [r.json()["echo"] for r in replies] == [{"n": n} for n in range(5)]
    assert replies[0].reason_phrase == "Created"
    assert replies[0].headers["content-type"] == "application/json"
    assert server.connections == 1


def test_a_body_of_unknown_length_goes_as_chunks_and_the_connection_stays(
    server: _Server,
) -> None:
    def parts() -> Iterator[bytes]:
        yield b'{"chunked": '
        yield b"true}"

    with httpx.Client(transport=KeepAliveTransport(), timeout=5) as client:
        reply = client.post(f"http://127.0.0.1:{server.port}/ok", content=parts())
        again = client.post(f"http://127.0.0.1:{server.port}/ok", json={"next": 1})
    assert reply.json()["echo"] == {"chunked": True}
    assert again.json()["echo"] == {"next": 1}
    assert server.connections == 1


def test_calls_side_by_side_leave_that_many_connections_kept(server: _Server) -> None:
    transport = KeepAliveTransport()
    client = httpx.Client(transport=transport, timeout=5)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        statuses.append(client.post(f"http://127.0.0.1:{server.port}/ok", json={}).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert statuses == [200] * 4
    # What a standby's keep_warm relies on: each side-by-side call's connection stays.
    assert transport.idle_connections() == server.connections
    assert 1 <= server.connections <= 4
    client.close()
    assert transport.idle_connections() == 0


def test_a_connection_the_server_closed_while_idle_is_never_written_to(server: _Server) -> None:
    transport = KeepAliveTransport()
    with httpx.Client(transport=transport, timeout=5) as client:
        client.post(f"http://127.0.0.1:{server.port}/hangup", json={})
        assert server.hung_up.wait(10)
        (kept,) = transport._idle[("http", "127.0.0.1", server.port)]
        assert _poll(lambda: _closed_by_peer(kept.connection)), "the FIN never arrived"
        # The server closed it after answering: the next call must not fail on it.
        reply = client.post(f"http://127.0.0.1:{server.port}/ok", json={"after": 1})
    assert reply.json()["echo"] == {"after": 1}
    assert server.connections == 2


def test_connection_close_from_the_server_is_honoured(server: _Server) -> None:
    transport = KeepAliveTransport()
    with httpx.Client(transport=transport, timeout=5) as client:
        client.post(f"http://127.0.0.1:{server.port}/close", json={})
        assert transport.idle_connections() == 0
        client.post(f"http://127.0.0.1:{server.port}/ok", json={})
    assert server.connections == 2


def test_an_idle_connection_past_its_expiry_is_replaced(server: _Server) -> None:
    now = [100.0]
    transport = KeepAliveTransport(keepalive_expiry=5.0, clock=lambda: now[0])
    with httpx.Client(transport=transport, timeout=5) as client:
        client.post(f"http://127.0.0.1:{server.port}/ok", json={})
        now[0] += 4.9
        client.post(f"http://127.0.0.1:{server.port}/ok", json={})
        assert server.connections == 1
        now[0] += 5.0
        client.post(f"http://127.0.0.1:{server.port}/ok", json={})
    assert server.connections == 2


def test_nothing_listening_is_a_connect_error_nothing_was_sent() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with (
        httpx.Client(transport=KeepAliveTransport(), timeout=2) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.post(f"http://127.0.0.1:{port}/ok", json={})


def test_no_answer_in_time_is_a_read_timeout(server: _Server) -> None:
    with (
        httpx.Client(transport=KeepAliveTransport(), timeout=0.3) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post(f"http://127.0.0.1:{server.port}/silent", json={})


def test_a_server_that_hangs_up_without_answering_is_a_protocol_error(server: _Server) -> None:
    transport = KeepAliveTransport()
    with httpx.Client(transport=transport, timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(f"http://127.0.0.1:{server.port}/drop", json={})
        assert transport.idle_connections() == 0  # a failed connection is never kept
        assert client.post(f"http://127.0.0.1:{server.port}/ok", json={}).status_code == 200


def test_tls_is_verified_and_a_stranger_is_refused_at_connect(tmp_path: Path) -> None:
    cert, key = self_signed_loopback(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with _serving(server_context) as srv:
        url = f"https://127.0.0.1:{srv.port}/ok"
        trusting = ssl.create_default_context(cafile=str(cert))
        with LeanClient(timeout=5, verify=trusting) as client:
            assert client.post(client.url_for(url), json={"tls": True}).json()["echo"] == {
                "tls": True
            }
            assert client.post(client.url_for(url), json={}).status_code == 200
        assert srv.connections == 1
        with LeanClient(timeout=5) as stranger, pytest.raises(httpx.ConnectError):
            stranger.post(stranger.url_for(url), json={})  # the system store does not know it
