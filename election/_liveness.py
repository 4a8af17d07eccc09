"""Fast crash detection: the leader's liveness socket and the standbys' probes.

    server = LivenessServer("127.0.0.1"); server.start()      # leader, before writing /leader
    server.address                                             # "127.0.0.1:40123" -> /leader
    probe = LivenessProbe(leader_info, on_closed=report)       # standby
    probe.start()        # connects and blocks in recv(); end-of-stream -> report(leader_info)
    probe.close()        # our own close is not reported

A process that dies (SIGKILL, segfault, OOM kill) has its sockets closed by the
kernel, so every standby's recv() returns end-of-stream within a millisecond
(the spirit of the Falcon failure detector, SOSP 2011). A paused or partitioned
leader closes nothing: detection then falls back to the ZooKeeper session timeout.

A report is only a hint: the reporter still checks that the same /leader node is
in place and removes it with a transaction that also deletes the dead leader's
election node, which fails if that session already ended.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable

from election._model import LeaderInfo

__all__ = ["LivenessProbe", "LivenessServer"]

log = logging.getLogger("pfxha.election")


class LivenessServer:
    """Accepts connections and holds them open; never sends a byte."""

    def __init__(self, host: str) -> None:
        self._host = host
        self._listener: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.address = ""

    def start(self) -> str:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self._host, 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)
        host, port = listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._thread = threading.Thread(target=self._serve, name="pfxha-liveness", daemon=True)
        self._thread.start()
        return self.address

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    with contextlib.suppress(OSError):
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        self._selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(1024)
                except OSError:
                    data = b""
                if not data:  # the standby went away
                    self._selector.unregister(sock)
                    sock.close()
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class LivenessProbe:
    """Holds one connection to a leader's liveness socket; reports end-of-stream once."""

    def __init__(
        self,
        leader: LeaderInfo,
        on_closed: Callable[[LeaderInfo], None],
        connect_timeout: float = 0.5,
    ) -> None:
        self.leader = leader
        self._on_closed = on_closed
        self._connect_timeout = connect_timeout
        self._closed_by_us = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name="pfxha-liveness-probe", daemon=True).start()

    def _run(self) -> None:
        assert self.leader.liveness is not None
        host, _, port = self.leader.liveness.rpartition(":")
        try:
            sock = socket.create_connection((host, int(port)), timeout=self._connect_timeout)
        except ConnectionRefusedError:
            # Nobody listens where the leader said it would: its process is gone.
            self._report("connection refused")
            return
        except OSError as exc:
            # A timeout or unreachable address proves nothing: fall back to the session.
            log.info(
                "[5022] liveness probe to %s failed: %s",
                self.leader.liveness,
                exc,
                extra={"event_id": 5022},
            )
            return
        with self._lock:
            if self._closed_by_us.is_set():
                sock.close()
                return
            self._sock = sock
        sock.settimeout(None)
        try:
            while sock.recv(1024):
                pass
            self._report("end of stream")
        except OSError as exc:
            self._report(f"socket error: {exc}")
        finally:
            sock.close()

    def _report(self, how: str) -> None:
        if self._closed_by_us.is_set():
            return
        log.info(
            "[5021] liveness socket of leader %s (epoch %d) closed: %s",
            self.leader.name,
            self.leader.epoch,
            how,
            extra={"event_id": 5021},
        )
        self._on_closed(self.leader)

    def close(self) -> None:
        with self._lock:
            self._closed_by_us.set()
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
