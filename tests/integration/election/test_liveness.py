"""The fast path's sockets on loopback: end of stream is reported, our own close is not."""

from __future__ import annotations

import threading

from election._liveness import LivenessProbe, LivenessServer
from election._model import LeaderInfo


def _probe(address: str) -> tuple[LivenessProbe, threading.Event]:
    reported = threading.Event()
    leader = LeaderInfo("c1", 3, "now", liveness=address, czxid=7)
    probe = LivenessProbe(leader, lambda info: reported.set(), connect_timeout=1.0)
    probe.start()
    return probe, reported


def test_a_closed_liveness_socket_is_reported_once_and_our_own_close_is_not() -> None:
    server = LivenessServer("127.0.0.1")
    address = server.start()
    probe, reported = _probe(address)
    quiet, quiet_reported = _probe(address)
    quiet.close()  # a standby that stops probing must not report the leader dead
    assert not reported.wait(0.2)
    server.stop()  # what the kernel does for a crashed leader: every socket closes
    assert reported.wait(5)
    assert not quiet_reported.is_set()
    probe.close()


def test_nobody_listening_counts_as_dead() -> None:
    server = LivenessServer("127.0.0.1")
    address = server.start()
    server.stop()
    _, reported = _probe(address)
    assert reported.wait(5)
