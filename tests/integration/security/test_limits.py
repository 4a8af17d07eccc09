"""Limits a hostile client meets: connections per client, body size, batch, long poll."""

from __future__ import annotations

import secrets
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chaos.launch._process import wait_for
from chaos.launch.service import ServiceProcess, ServiceTLS, self_signed_loopback
from connector.identity import enroll
from connector.service_client import ServiceClient


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_one_client_cannot_hold_every_connection(
    start_service: Callable[..., ServiceProcess],
) -> None:
    svc = start_service(extra_args=["--max-connections-per-client", "3", "--renewal-interval", "0"])
    # Requests being served (long polls of the registered holder) hold the quota...
    with ServiceClient(svc.url, timeout=10) as client:
        client.register("c1", 1)
    body = b'{"name": "c1", "epoch": 1, "max_items": 1, "wait_s": 30}'
    polls = [socket.create_connection((svc.host, svc.port)) for _ in range(3)]
    try:
        for conn in polls:
            conn.sendall(
                b"POST /api/v1/connector/requests/poll HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        wait_for(lambda: not _healthy(svc.url), timeout=5, what="the fourth connection refused")
        polls.pop().close()
        wait_for(lambda: _healthy(svc.url), timeout=5, what="a connection accepted again")
    finally:
        for conn in polls:
            conn.close()


def test_slow_heads_hold_no_quota(start_service: Callable[..., ServiceProcess]) -> None:
    """A slow client's unfinished requests are closed to make room for a new connection."""
    svc = start_service(extra_args=["--max-connections-per-client", "3", "--renewal-interval", "0"])
    slow = [socket.create_connection((svc.host, svc.port)) for _ in range(3)]
    try:
        for conn in slow:
            conn.sendall(b"POST /api/v1/connector/register HTTP/1.1\r\nHost: x\r\n")
        for _ in range(5):
            assert _healthy(svc.url)
    finally:
        for conn in slow:
            conn.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "c", "epoch": 1, "max_items": 501, "wait_s": 0}, 422),
        ({"name": "c", "epoch": 1, "max_items": 1, "wait_s": 31}, 422),
        ({"name": "c", "epoch": 1, "max_items": 1, "wait_s": 0, "pad": "x" * 2_000_000}, 413),
    ],
)
def test_batch_long_poll_and_body_limits(
    service: ServiceProcess, body: dict[str, object], status: int
) -> None:
    answer = httpx.post(service.url + "/api/v1/connector/requests/poll", json=body, timeout=10)
    assert answer.status_code == status


def test_slow_anonymous_clients_do_not_starve_an_enrolled_connector(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    cert, key = self_signed_loopback(tmp_path / "tls")
    svc = start_service(
        admin_token=secrets.token_urlsafe(24),
        tls=ServiceTLS(cert, key, server_ca=cert, require_connector_certs=True),
        extra_args=["--max-connections-per-client", "2", "--renewal-interval", "0"],
    )
    identity = enroll(svc.url, svc.enrollment_token("c1"), tmp_path / "id", verify=str(cert))
    context = ssl.create_default_context(cafile=str(cert))
    slow = []
    try:
        for _ in range(2):  # the anonymous quota of this address, taken by a slow client
            conn = context.wrap_socket(
                socket.create_connection((svc.host, svc.port)), server_hostname=svc.host
            )
            conn.sendall(b"POST /api/v1/connector/register HTTP/1.1\r\nHost: x\r\n")
            slow.append(conn)
        with ServiceClient(svc.url, verify=str(cert), cert=identity.cert_pair) as connector:
            connector.register("c1", 1)  # its own quota: served
        # Unfinished requests hold no quota: anonymous callers are served too.
        assert _healthy_tls(svc.url, context)
    finally:
        for conn in slow:
            conn.close()


def _healthy_tls(url: str, context: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0, verify=context).status_code == 200
    except httpx.HTTPError:
        return False
