"""A ZooKeeper server that drops SYNs costs the election's client the bound, not the session.

The silent server is a loopback listener whose accept queue is full: Linux then
drops further SYNs, as a crashed or cut-off host does.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from election._connect import BoundedConnectHandler
from election._zk import make_client


@contextlib.contextmanager
def silent_listener() -> Iterator[tuple[str, int]]:
    """A loopback address whose SYNs go unanswered (listen backlog full)."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        address = server.getsockname()
        for _ in range(8):
            client = stack.enter_context(socket.socket())
            client.settimeout(0.5)
            try:
                client.connect(address)
            except TimeoutError:
                break
        else:
            pytest.fail("the listener's accept queue never filled")
        yield address


def test_a_connect_to_a_silent_server_gives_up_after_the_bound() -> None:
    with silent_listener() as address:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            BoundedConnectHandler(0.2).create_connection(address=address, timeout=5.0)
        took = time.monotonic() - started
    assert 0.19 <= took < 2.5  # the bound, not the 5 s asked for


def test_the_election_client_bounds_connects_by_its_servers() -> None:
    client = make_client("198.18.0.2:2181,198.18.0.3:2181,198.18.0.4:2181", session_timeout=1.0)
    assert isinstance(client.handler, BoundedConnectHandler)
    assert client.handler.connect_timeout == pytest.approx(1.0 / 3)
