"""free_port: ports a server can bind, outside the range outgoing connections draw from."""

from __future__ import annotations

import itertools
import random
import socket

import pytest

from chaos.launch import free_port
from chaos.launch._process import _ephemeral_floor


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    floor = _ephemeral_floor()
    if floor - 10000 >= 1000:
        assert all(10000 <= port < floor for port in ports)
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = itertools.chain([busy, busy], range(20000, 20100))
        monkeypatch.setattr(random, "randrange", lambda _low, _high: next(picks))
        monkeypatch.setattr("chaos.launch._process._ephemeral_floor", lambda: busy + 1)
        port = free_port()
    assert port != busy
    assert 20000 <= port < 20100
