"""The TCP connect bound of the election's kazoo clients (election._connect)."""

from __future__ import annotations

import pytest

from election._connect import MIN_CONNECT_S, connect_bound


def test_the_session_is_shared_by_the_servers_listed() -> None:
    assert connect_bound("a:2181,b:2181,c:2181", 1.0) == pytest.approx(1.0 / 3)
    assert connect_bound("a:2181", 2.0) == 2.0


def test_a_chroot_is_not_a_server() -> None:
    assert connect_bound("a:2181,b:2181/pfxha/x,y", 1.0) == pytest.approx(0.5)


def test_never_below_the_floor() -> None:
    assert connect_bound(",".join(f"h{i}:2181" for i in range(9)), 0.2) == MIN_CONNECT_S
