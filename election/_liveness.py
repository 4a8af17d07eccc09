"""Fast crash detection: the leader's liveness socket and the standbys' probes.

    host = source_address_towards("zk1:2181,zk2:2181")        # "10.0.0.5": our side of the route
    server = LivenessServer(host, name="c1", port=0)           # leader, before writing /leader
    server.start()                                             # "10.0.0.5:40123" -> /leader
    server.incarnation                                         # random token -> /leader too
    probe = LivenessProbe(leader_info, on_closed=report, on_state=publish)   # standby
    probe.start()        # connect, check the greeting, then block in recv()
    probe.close()        # our own close is not reported

A process that dies (SIGKILL, segfault, OOM kill) has its sockets closed by the
kernel, so every standby's recv() returns end-of-stream within a millisecond
(the spirit of the Falcon failure detector, SOSP 2011). A paused or partitioned
leader closes nothing: detection then falls back to the ZooKeeper session timeout.

The proof rule. On accept the server sends one line,
``pfxha-liveness/1 <name> <incarnation>\\n``, where the incarnation is a random token
the leader also writes into ``/leader``. A probe *arms* only once it has read the
greeting that matches the ``/leader`` it watches; only end of stream (or a reset) on
an armed connection is reported. Everything else proves nothing about the leader:
a refused or timed-out connect, an unreachable address (a firewall, a wrong or
loopback address seen from another host), a stranger's greeting, a close before the
greeting. The probe then says "unavailable" (once, via ``on_state``), retries with
back-off, and a crash of that leader is left to the session timeout.

A report is only a hint: the reporter still checks that the same /leader node is
in place and removes it with a transaction that also deletes the dead leader's
election node, which fails if that session already ended.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable

from election._model import FastPath, LeaderInfo

__all__ = [
    "LivenessProbe",
    "LivenessServer",
    "format_address",
    "greeting",
    "source_address_towards",
    "split_address",
]

log = logging.getLogger("pfxha.election")

_GREETING_PREFIX = "pfxha-liveness/1"
# Longer than any greeting we send (names are at most 64 characters): a peer that
# sends more without a newline is not a pfxha leader.
_GREETING_MAX = 160


def greeting(name: str, incarnation: str) -> bytes:
    """The line a leader's liveness socket sends to every connection it accepts."""
    return f"{_GREETING_PREFIX} {name} {incarnation}\n".encode()


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[fd00::5]:7000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(address: str) -> tuple[str, int]:
    """The inverse of :func:`format_address`; ValueError if it is not ``host:port``."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    number = int(port)
    if not sep or not host or not 0 < number < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host, number


def source_address_towards(hosts: str) -> str:
    """The local IP address this host uses to reach the first routable ZooKeeper server.

    A UDP socket ``connect()`` only asks the kernel for a route: no packet is sent.
    The answer is what other members (which reach the same ZooKeeper) can most likely
    reach us on; with ZooKeeper on 127.0.0.1 it is 127.0.0.1, as it should be.
    Raises OSError when no server in ``hosts`` resolves or has a route.
    """
    problems: list[str] = []
    for hostport in (h.strip() for h in hosts.split(",")):
        if not hostport:
            continue
        try:
            host, port = split_address(hostport)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as exc:
            problems.append(f"{hostport}: {exc}")
            continue
        for family, kind, proto, _, sockaddr in infos:
            with socket.socket(family, kind, proto) as probe:
                try:
                    probe.connect(sockaddr)
                except OSError as exc:
                    problems.append(f"{hostport}: {exc}")
                    continue
                return str(probe.getsockname()[0])
    raise OSError(f"no route to any ZooKeeper server ({'; '.join(problems) or hosts!r})")


class LivenessServer:
    """Accepts connections, greets each with its incarnation, then holds them open.

    ``host`` is the address to bind (``0.0.0.0`` for every interface); ``advertise``
    the address others dial (default: ``host``); ``port`` 0 lets the kernel pick.
    """

    def __init__(
        self, host: str, *, name: str, port: int = 0, advertise: str | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._advertise = advertise or host
        self._greeting = b""
        self._listener: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = name
        # New for every server: a later leadership of the same member (or another
        # process that gets the same port) greets with a different token.
        self.incarnation = secrets.token_hex(8)
        self.address = ""

    def start(self) -> str:
        """Bind and listen; the advertised ``host:port``. Raises OSError if binding fails."""
        ipv6 = ipaddress.ip_address(self._host).version == 6
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            # A fixed port must be rebindable at once by the next leadership of this
            # member, while connections of the previous one sit in TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)
        port = int(listener.getsockname()[1])
        self.address = format_address(self._advertise, port)
        self._greeting = greeting(self.name, self.incarnation)
        self._thread = threading.Thread(target=self._serve, name="pfxha-liveness", daemon=True)
        self._thread.start()
        return self.address

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept(sock)
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

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            # A fresh connection's send buffer is empty: a short line never blocks long.
            conn.settimeout(1.0)
            conn.sendall(self._greeting)
            conn.setblocking(False)
            self._selector.register(conn, selectors.EVENT_READ)
        except OSError:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


ProbeStateCallback = Callable[[LeaderInfo, FastPath, str], None]


class LivenessProbe:
    """Holds one verified connection to a leader's liveness socket; reports its end once.

    ``on_state(leader, state, reason)`` hears ARMED when the greeting matched and
    UNAVAILABLE when an attempt proved nothing; repeats of the same state are not
    passed on, and the first UNAVAILABLE is logged once for this leader.
    """

    def __init__(
        self,
        leader: LeaderInfo,
        on_closed: Callable[[LeaderInfo], None],
        connect_timeout: float = 0.5,
        *,
        on_state: ProbeStateCallback | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
    ) -> None:
        self.leader = leader
        self._on_closed = on_closed
        self._on_state = on_state
        self._connect_timeout = connect_timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._closed_by_us = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        # (state, reason) as one value: the elector reads it from another thread.
        self._status: tuple[FastPath, str] | None = None
        self.failed_attempts = 0

    @property
    def status(self) -> tuple[FastPath, str] | None:
        """(ARMED or UNAVAILABLE, why), or None before the first attempt has ended."""
        return self._status

    @property
    def state(self) -> FastPath | None:
        return self._status[0] if self._status is not None else None

    @property
    def reason(self) -> str:
        return self._status[1] if self._status is not None else ""

    def start(self) -> None:
        threading.Thread(target=self._run, name="pfxha-liveness-probe", daemon=True).start()

    def _run(self) -> None:
        leader = self.leader
        if leader.liveness is None:
            self._unavailable(f"leader {leader.name} advertises no liveness socket", retry=False)
            return
        if leader.incarnation is None:
            self._unavailable(
                f"leader {leader.name} sends no liveness greeting (an older version)", retry=False
            )
            return
        try:
            address = split_address(leader.liveness)
        except ValueError:
            self._unavailable(f"unreadable liveness address {leader.liveness!r}", retry=False)
            return
        delay = self._retry_initial
        while not self._closed_by_us.is_set():
            failure = self._watch_once(address, greeting(leader.name, leader.incarnation))
            if failure is None:
                return  # reported, or closed by us
            self._unavailable(failure, retry=True)
            if self._closed_by_us.wait(delay):
                return
            delay = min(2 * delay, self._retry_max)

    def _watch_once(self, address: tuple[str, int], expected: bytes) -> str | None:
        """One connection: a reason if it proved nothing, None once it ended in a report."""
        where = self.leader.liveness
        try:
            sock = socket.create_connection(address, timeout=self._connect_timeout)
        except OSError as exc:
            return f"connect to {where}: {_describe(exc)}"
        with self._lock:
            if self._closed_by_us.is_set():
                sock.close()
                return None
            self._sock = sock
        try:
            try:
                line = self._read_greeting(sock)
            except OSError as exc:
                return f"no greeting from {where}: {_describe(exc)}"
            if self._closed_by_us.is_set():
                return None
            if line is None:
                return f"{where} closed the connection before greeting"
            if line != expected:
                return f"{where} is not leader {self.leader.name}'s socket (greeted {line[:80]!r})"
            self._set_state(FastPath.ARMED, "")
            sock.settimeout(None)
            try:
                while sock.recv(1024):
                    pass
                how = "end of stream"
            except ConnectionResetError:
                how = "connection reset"
            except OSError as exc:
                # Not an end the leader's kernel announced (e.g. a routing error):
                # proves nothing, so try again and let the session decide meanwhile.
                return f"verified connection to {where} failed: {_describe(exc)}"
            self._report(how)
            return None
        finally:
            with self._lock:
                self._sock = None
            sock.close()

    def _read_greeting(self, sock: socket.socket) -> bytes | None:
        """The first line (with its newline), or None on end of stream before one."""
        deadline = time.monotonic() + self._connect_timeout
        data = b""
        while b"\n" not in data and len(data) <= _GREETING_MAX:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
            chunk = sock.recv(_GREETING_MAX + 1 - len(data))
            if not chunk:
                return None
            data += chunk
        return data.split(b"\n", 1)[0] + b"\n" if b"\n" in data else data

    def _set_state(self, state: FastPath, reason: str) -> None:
        if self._closed_by_us.is_set() or state is self.state:
            return
        if state is FastPath.ARMED and self.failed_attempts:
            log.info(
                "[5024] fast path armed for leader %s (epoch %d) after %d failed attempt(s)",
                self.leader.name,
                self.leader.epoch,
                self.failed_attempts,
                extra={"event_id": 5024},
            )
        self._status = (state, reason)
        if self._on_state is not None:
            self._on_state(self.leader, state, reason)

    def _unavailable(self, reason: str, *, retry: bool) -> None:
        if self._closed_by_us.is_set():
            return
        self.failed_attempts += 1
        if self.state is not FastPath.UNAVAILABLE:
            # Once per leader (one probe per leader) and per loss of the armed state,
            # not per retry.
            log.warning(
                "[5022] fast path unavailable for leader %s (epoch %d): %s; a crash of it "
                "is detected by the session timeout%s",
                self.leader.name,
                self.leader.epoch,
                reason,
                " (retrying)" if retry else "",
                extra={"event_id": 5022},
            )
        else:
            log.debug("liveness probe to %s: %s", self.leader.liveness, reason)
        self._set_state(FastPath.UNAVAILABLE, reason)

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


def _describe(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__
