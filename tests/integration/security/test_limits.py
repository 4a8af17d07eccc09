"""Limits a hostile client meets: connections per client, body size, batch, long poll."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from chaos.launch._process import wait_for
from chaos.launch.service import ServiceProcess


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_one_client_cannot_hold_every_connection(
    start_service: Callable[..., ServiceProcess],
) -> None:
    svc = start_service(extra_args=["--max-connections-per-client", "3", "--renewal-interval", "0"])
    # A slow client: three connections that never finish their request.
    slow = [socket.create_connection((svc.host, svc.port)) for _ in range(3)]
    try:
        for conn in slow:
            conn.sendall(b"POST /api/v1/connector/register HTTP/1.1\r\nHost: x\r\n")
        wait_for(lambda: not _healthy(svc.url), timeout=5, what="the fourth connection refused")
        slow.pop().close()
        wait_for(lambda: _healthy(svc.url), timeout=5, what="a connection accepted again")
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
