"""Hostile and slow clients against the real service process (issue 18).

Non-finite numbers on every endpoint, huge refusals, oversized chunked bodies,
slow heads and slow bodies, file modes. Every bound here is generous: the
service answers in milliseconds; the bounds only catch starvation.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import secrets
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator

import httpx

from chaos.launch.service import ServiceProcess

NON_FINITE = ['{"name": "a", "epoch": NaN}', "[Infinity]", "-Infinity", '{"x": 1e999}']
REFUSAL_BYTES = 4096


def _operations(svc: ServiceProcess) -> list[tuple[str, str]]:
    """(method, path) of every operation the service publishes, path parameters filled."""
    doc = httpx.get(svc.url + "/openapi.json", timeout=10).json()
    out = []
    for path, item in doc["paths"].items():
        filled = path
        for part in path.split("/"):
            if part.startswith("{"):
                filled = filled.replace(part, "x1")
        out.extend((method.upper(), filled) for method in item)
    return out


def test_non_finite_numbers_are_refused_on_every_endpoint(admin_service: ServiceProcess) -> None:
    operations = _operations(admin_service)
    assert len(operations) > 30
    statuses: set[int] = set()
    with httpx.Client(base_url=admin_service.url, timeout=10) as client:
        for headers in ({}, admin_service.admin_headers()):
            for method, path in operations:
                for body in NON_FINITE:
                    answer = client.request(
                        method,
                        path,
                        content=body,
                        headers={**headers, "content-type": "application/json"},
                    )
                    assert answer.status_code in (400, 422), (method, path, answer.text)
                    assert len(answer.content) < REFUSAL_BYTES
                    statuses.add(answer.status_code)
    assert statuses == {422}
    log = (admin_service.directory / "service.log").read_text()
    assert "Traceback" not in log


def test_a_huge_body_of_unknown_keys_gets_a_small_refusal(admin_service: ServiceProcess) -> None:
    marker = "ECHO"
    many = "{" + ",".join(f'"{marker}{i:05d}": 1' for i in range(60_000)) + "}"
    assert 900_000 < len(many) < 1_048_576
    few = "{" + ",".join(f'"{marker}{i}": "{"y" * 500}"' for i in range(900)) + "}"

    def post(body: str) -> httpx.Response:
        with httpx.Client(base_url=admin_service.url, timeout=30) as client:
            return client.post(
                "/api/v1/admin/users",
                content=body,
                headers={"content-type": "application/json", **admin_service.admin_headers()},
            )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, [many, many, few, few]))
        started = time.monotonic()
        assert httpx.get(admin_service.url + "/healthz", timeout=10).status_code == 200
        assert time.monotonic() - started < 5
    for answer in answers:
        assert answer.status_code == 422
        assert len(answer.content) < REFUSAL_BYTES
    assert marker not in answers[0].text  # the object was refused whole: nothing echoed
    assert answers[2].json()["errors"] > 900  # every unknown key counted, ten shown
    assert len(answers[2].json()["detail"]) == 10
    log = (admin_service.directory / "service.log").read_text()
    assert marker not in log


def test_an_oversized_chunked_body_is_413(admin_service: ServiceProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65_536

    answer = httpx.post(admin_service.url + "/api/v1/admin/users", content=chunks(), timeout=30)
    assert answer.status_code == 413
    declared = httpx.post(
        admin_service.url + "/api/v1/admin/users", content=b"x" * 1_100_000, timeout=30
    )
    assert declared.status_code == 413


def test_the_database_is_private(admin_service: ServiceProcess) -> None:
    directory = admin_service.db_path.parent
    admin_service.stop(grace=5)
    directory.chmod(0o755)
    admin_service.db_path.chmod(0o644)
    admin_service.start()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for suffix in ("", "-wal", "-shm"):
        path = admin_service.db_path.with_name(admin_service.db_path.name + suffix)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# -- slow clients ---------------------------------------------------------------------


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait_closed(
    socks: list[socket.socket], deadline: float, clock: Callable[[], float]
) -> dict[int, float]:
    """When each socket was seen closed by the peer (monotonic time)."""
    closed: dict[int, float] = {}
    while len(closed) < len(socks) and clock() < deadline:
        open_ = [s for i, s in enumerate(socks) if i not in closed]
        readable, _, _ = select.select(open_, [], [], max(0.0, min(1.0, deadline - clock())))
        for sock in readable:
            if _closed(sock):
                closed[socks.index(sock)] = clock()
    return closed


def test_slow_anonymous_heads_starve_nobody_and_are_closed(
    start_service: Callable[..., ServiceProcess],
) -> None:
    header_timeout = 6.0
    svc = start_service(
        admin_token=secrets.token_urlsafe(24),
        extra_args=[
            "--renewal-interval",
            "0",
            "--header-timeout",
            str(header_timeout),
            "--max-connections-per-client",
            "32",
        ],
    )
    socks: list[socket.socket] = []
    stop = threading.Event()

    def dribble() -> None:  # a header line every half second, never the blank line
        while not stop.wait(0.5):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")

    opened = time.monotonic()
    for _ in range(64):  # twice the per-client cap, all from this address, no credential
        sock = socket.create_connection((svc.host, svc.port), timeout=5)
        sock.sendall(b"POST /api/v1/admin/users HTTP/1.1\r\nHost: x\r\n")
        sock.setblocking(False)
        socks.append(sock)
    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    try:
        started = time.monotonic()
        with svc.admin_client(timeout=10) as admin:
            assert admin.get("/api/v1/read/connectors").status_code == 200
            assert admin.get("/metrics").status_code == 200
        assert httpx.get(svc.url + "/healthz", timeout=10).status_code == 200
        answered = time.monotonic() - started
        assert answered < 5, f"admin and /healthz took {answered:.1f} s"
        closed = _wait_closed(socks, opened + header_timeout + 20, time.monotonic)
    finally:
        stop.set()
        dribbler.join(timeout=10)
        for sock in socks:
            sock.close()
    assert len(closed) == len(socks)  # every slow connection was closed
    # The newest ones were not evicted: the header timeout closed them, never earlier.
    assert max(closed.values()) - opened >= header_timeout


def test_a_slow_body_gets_408(start_service: Callable[..., ServiceProcess]) -> None:
    svc = start_service(extra_args=["--renewal-interval", "0", "--body-timeout", "2"])
    sock = socket.create_connection((svc.host, svc.port), timeout=20)
    try:
        started = time.monotonic()
        sock.sendall(
            b"POST /api/v1/connector/register HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 2 <= elapsed < 15


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (head and Content-Length body); b"" if closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_request_under_way_outlives_slow_openers_from_its_address(
    start_service: Callable[..., ServiceProcess],
) -> None:
    """The cap closes silent openers before a kept-alive connection that is sending a
    request (a drill's enrollment was cut mid-request while anonymous openers shared
    its address: the device was made, its client saw "Server disconnected")."""
    cap = 8
    svc = start_service(
        extra_args=["--renewal-interval", "0", "--max-connections-per-client", str(cap)]
    )
    client = socket.create_connection((svc.host, svc.port), timeout=20)
    openers: list[socket.socket] = []
    try:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(client).startswith(b"HTTP/1.1 200")  # served once: kept alive
        client.sendall(
            b"POST /api/v1/admin/users HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{"
        )
        for _ in range(cap * 2):  # each one past the cap evicts someone
            opener = socket.create_connection((svc.host, svc.port), timeout=5)
            opener.sendall(b"GET /healthz HTTP/1.1\r\n")  # never finishes its head
            openers.append(opener)
        # The newest opener was accepted: the server has settled every eviction before it.
        assert httpx.get(svc.url + "/healthz", timeout=10).status_code == 200
        client.sendall(b"}")
        answer = _read_response(client)
    finally:
        client.close()
        for opener in openers:
            opener.close()
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]  # answered (a refusal), not closed
