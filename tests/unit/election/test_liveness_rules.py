"""The fast path's proof rule, with real sockets on 127.0.0.1.

Only end of stream (or a reset) on a connection whose greeting matched the watched
/leader is reported; a refused connect, a stranger's greeting, a close before the
greeting or silence prove nothing. "Nothing reported" is checked after the probe has
finished several attempts (each attempt's outcome is decided before the next one
starts), never after a sleep.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from chaos.launch import wait_for
from election._liveness import (
    LivenessProbe,
    LivenessServer,
    greeting,
    source_address_towards,
    split_address,
)
from election._model import FastPath, LeaderInfo, MemberInfo

DEADLINE_S = 10.0


@dataclass
class Watch:
    """A probe on one leader, with everything it told us."""

    probe: LivenessProbe
    reports: list[LeaderInfo] = field(default_factory=list)
    states: list[tuple[FastPath, str]] = field(default_factory=list)

    def wait_attempts(self, count: int) -> None:
        wait_for(
            lambda: self.probe.failed_attempts >= count,
            timeout=DEADLINE_S,
            what=f"{count} failed probe attempts",
            interval=0.01,
        )

    def wait_state(self, state: FastPath) -> None:
        wait_for(lambda: self.probe.state is state, timeout=DEADLINE_S, what=f"state {state}")


@pytest.fixture
def watch() -> Iterator[Callable[..., Watch]]:
    made: list[Watch] = []

    def start(address: str, *, incarnation: str | None = "abc123", name: str = "c1") -> Watch:
        leader = LeaderInfo(name, 3, "now", liveness=address, czxid=7, incarnation=incarnation)
        holder: list[Watch] = []
        probe = LivenessProbe(
            leader,
            lambda info: holder[0].reports.append(info),
            connect_timeout=0.3,
            on_state=lambda _l, state, reason: holder[0].states.append((state, reason)),
            retry_initial=0.01,
            retry_max=0.02,
        )
        holder.append(Watch(probe))
        made.append(holder[0])
        probe.start()
        return holder[0]

    yield start
    for w in made:
        w.probe.close()


@contextlib.contextmanager
def bound_port() -> Iterator[socket.socket]:
    """A port that is bound (nobody else gets it) but not listening: connects are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def stranger(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A listener that runs ``serve`` on every connection it accepts."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            serve(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


def address_of(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


# -- what proves nothing ------------------------------------------------------------------


def test_a_refused_connect_is_not_reported(
    watch: Callable[..., Watch], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pfxha.election")
    with bound_port() as sock:
        w = watch(address_of(sock))
        w.wait_attempts(5)
    assert w.reports == []
    assert [s for s, _ in w.states] == [FastPath.UNAVAILABLE]  # once, not per retry
    assert "refused" in w.states[0][1]
    unavailable = [r for r in caplog.records if getattr(r, "event_id", None) == 5022]
    assert len(unavailable) == 1  # logged once for this leader


def test_a_strangers_greeting_is_not_reported(watch: Callable[..., Watch]) -> None:
    def greet_wrongly(conn: socket.socket) -> None:
        conn.sendall(greeting("c1", "someone-else"))
        conn.shutdown(socket.SHUT_RDWR)  # ... and then close: an end that proves nothing

    with stranger(greet_wrongly) as address:
        w = watch(address)
        w.wait_attempts(3)
    assert w.reports == []
    assert w.probe.state is FastPath.UNAVAILABLE
    assert "not leader c1's socket" in w.states[0][1]


def test_another_members_greeting_is_not_reported(watch: Callable[..., Watch]) -> None:
    server = LivenessServer("127.0.0.1", name="c2")
    address = server.start()
    try:
        w = watch(address, incarnation=server.incarnation, name="c1")
        w.wait_attempts(2)
    finally:
        server.stop()
    w.wait_attempts(4)  # attempts after the stop: refused, still nothing reported
    assert w.reports == []


def test_end_of_stream_before_the_greeting_is_not_reported(watch: Callable[..., Watch]) -> None:
    with stranger(lambda conn: conn.shutdown(socket.SHUT_RDWR)) as address:
        w = watch(address)
        w.wait_attempts(3)
    assert w.reports == []
    assert "before greeting" in w.states[0][1]


def test_silence_is_not_reported(watch: Callable[..., Watch]) -> None:
    with stranger(lambda conn: None) as address:  # accepts, says nothing
        w = watch(address)
        w.wait_attempts(2)
    assert w.reports == []
    assert "no greeting" in w.states[0][1]


def test_a_leader_without_incarnation_is_never_dialled(watch: Callable[..., Watch]) -> None:
    # A /leader written by an older version: no greeting to check, so no proof possible.
    server = LivenessServer("127.0.0.1", name="c1")
    address = server.start()
    try:
        w = watch(address, incarnation=None)
        w.wait_state(FastPath.UNAVAILABLE)
        assert "older version" in w.probe.reason
    finally:
        server.stop()
    assert w.reports == []


# -- what is proof ------------------------------------------------------------------------


def test_end_of_stream_after_the_matching_greeting_is_reported_once(
    watch: Callable[..., Watch],
) -> None:
    server = LivenessServer("127.0.0.1", name="c1")
    address = server.start()
    w = watch(address, incarnation=server.incarnation)
    quiet = watch(address, incarnation=server.incarnation)
    w.wait_state(FastPath.ARMED)
    quiet.wait_state(FastPath.ARMED)
    quiet.probe.close()  # a standby that stops probing must not report the leader dead
    assert w.reports == []
    server.stop()  # what the kernel does for a crashed leader: every socket closes
    wait_for(lambda: len(w.reports) == 1, timeout=DEADLINE_S, what="one report")
    assert w.reports[0].incarnation == server.incarnation
    assert quiet.reports == []
    assert [s for s, _ in w.states] == [FastPath.ARMED]


def test_a_reset_after_the_matching_greeting_is_reported(watch: Callable[..., Watch]) -> None:
    def greet_then_reset(conn: socket.socket) -> None:
        conn.sendall(greeting("c1", "abc123"))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        armed.wait(DEADLINE_S)
        conn.close()  # linger 0: the peer gets a RST, not an end of stream

    armed = threading.Event()
    with stranger(greet_then_reset) as address:
        w = watch(address)
        w.wait_state(FastPath.ARMED)
        armed.set()
        wait_for(lambda: len(w.reports) == 1, timeout=DEADLINE_S, what="one report")


def test_a_probe_arms_once_the_leader_listens(watch: Callable[..., Watch]) -> None:
    with bound_port() as sock:
        w = watch(address_of(sock))
        w.wait_attempts(2)  # refused while nobody listens
        sock.listen(4)
        conn: list[socket.socket] = []

        def serve() -> None:
            accepted, _ = sock.accept()
            accepted.sendall(greeting("c1", "abc123"))
            conn.append(accepted)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        w.wait_state(FastPath.ARMED)
        thread.join(DEADLINE_S)
        assert [s for s, _ in w.states] == [FastPath.UNAVAILABLE, FastPath.ARMED]
        conn[0].close()
        wait_for(lambda: len(w.reports) == 1, timeout=DEADLINE_S, what="one report")


# -- addresses and node contents ------------------------------------------------------------


def test_the_route_to_a_loopback_zookeeper_starts_on_loopback() -> None:
    assert source_address_towards("127.0.0.1:2181") == "127.0.0.1"
    # A server that cannot be used is skipped; the next one answers.
    assert source_address_towards("127.0.0.1:0,127.0.0.2:2181") == "127.0.0.1"
    with pytest.raises(OSError, match="no route"):
        source_address_towards("127.0.0.1:0")


def test_addresses_round_trip_with_ipv6_brackets() -> None:
    assert split_address("[fd00::5]:7000") == ("fd00::5", 7000)
    assert split_address("10.0.0.5:7000") == ("10.0.0.5", 7000)
    server = LivenessServer("0.0.0.0", name="c1", advertise="127.0.0.1")
    try:
        host, port = split_address(server.start())
        assert host == "127.0.0.1"
        assert port > 0
    finally:
        server.stop()


def test_old_nodes_without_the_new_fields_still_parse() -> None:
    old = b'{"name":"c1","epoch":4,"since":"x","liveness":"127.0.0.1:5","node":"m-c1-p0-1"}'
    leader = LeaderInfo.parse(old)
    assert leader is not None
    assert leader.incarnation is None
    new = LeaderInfo("c1", 4, "x", liveness="10.0.0.5:7000", incarnation="f00d")
    assert LeaderInfo.parse(new.to_json()) == new
    member = MemberInfo.parse("c2", b'{"role":"standby","pid":5}')
    assert (member.fast_path, member.fast_path_reason) == ("", "")
