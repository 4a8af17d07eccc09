"""One child process with its log file, readiness probe and fault controls.

    proc = ManagedProcess("zk1", ["java", ...], log_path=run_dir / "zk1.log")
    proc.start()
    proc.wait_ready(lambda: port_open("127.0.0.1", 2181), timeout=20, what="zk1 serving")
    proc.pause()      # SIGSTOP: a hung process that closes no socket
    proc.resume()     # SIGCONT
    proc.kill()       # SIGKILL: a crash; the kernel closes its sockets
    proc.stop()       # SIGTERM, then SIGKILL after a grace period

Only the pid this object started is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "PORT_RANGE_ENV",
    "LaunchError",
    "ManagedProcess",
    "free_port",
    "free_port_pair",
    "port_open",
    "wait_for",
]


class LaunchError(RuntimeError):
    """A server could not be started or did not become ready; the message says why."""


_LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_SERVER_PORT = 10000  # below: well-known and registered services
_handed_out: set[tuple[str, int]] = set()
_handed_out_lock = threading.Lock()


def _ephemeral_floor() -> int:
    """The lowest port the kernel picks for outgoing connections (Linux default 32768)."""
    try:
        return int(_LOCAL_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# "LOW-HIGH": this process tree's share of the ports. Not PFXHA_*: a connector started
# under it would refuse an unknown PFXHA_ variable as a misspelt setting.
PORT_RANGE_ENV = "CHAOS_PORT_RANGE"


def _server_port_range() -> tuple[int, int]:
    """Where :func:`free_port` picks: below the ephemeral range, or ``$CHAOS_PORT_RANGE``.

    Test runs that share the machine (pytest-xdist workers) each get a range of their
    own, inherited by every lab process they start, so two runs never pick one port.
    """
    floor = _ephemeral_floor()
    shared = os.environ.get(PORT_RANGE_ENV, "")
    low, _, high = shared.partition("-")
    if low.isdigit() and high.isdigit() and _LOWEST_SERVER_PORT <= int(low) < int(high) <= floor:
        return int(low), int(high)
    return _LOWEST_SERVER_PORT, floor


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``, outside the ephemeral range.

    ``bind(port 0)`` hands out a port from the ephemeral range, where every
    outgoing connection (HTTP clients, ZooKeeper sessions) takes its local port
    too: one of those may take it before our server binds it (seen: a flow
    bench's service failing with "address already in use"). Below that range
    only servers bind, so a port picked there stays free; ports handed out by
    this process are never handed out again.
    """
    low, high = _server_port_range()
    if high - low >= 1000:
        for _ in range(100):
            port = random.randrange(low, high)
            with _handed_out_lock:
                if (host, port) in _handed_out:
                    continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            with _handed_out_lock:
                _handed_out.add((host, port))
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))  # no room below the ephemeral range: take the kernel's pick
        return int(sock.getsockname()[1])


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` were both free, both reserved.

    For servers that derive a second listener from the first (``bao server
    -dev`` binds its cluster listener on the API port plus one): a plain
    :func:`free_port` may hand the second one to another server of the lab.
    """
    for _ in range(100):
        port = free_port(host)
        with _handed_out_lock:
            if (host, port + 1) in _handed_out:
                continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port + 1))
            except OSError:
                continue
        with _handed_out_lock:
            _handed_out.add((host, port + 1))
        return port
    raise LaunchError(f"no two consecutive free ports on {host}")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll ``predicate`` until it is true, or raise :class:`LaunchError` at the deadline."""
    deadline = clock() + timeout
    while True:
        if predicate():
            return
        if clock() >= deadline:
            raise LaunchError(f"timed out after {timeout:.1f}s waiting for {what}")
        sleep(interval)


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM arriving inside the block are delivered at its end.

    Their Python handlers raise (KeyboardInterrupt; the drill turns SIGTERM into
    one too), and only ever in the main thread: elsewhere there is nothing to hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[signal.Signals, Any] = {}
    for interrupt in _INTERRUPTS:
        handler = signal.getsignal(interrupt)
        if callable(handler):
            previous[interrupt] = handler
            signal.signal(interrupt, lambda number, _frame: held.append(number))
    try:
        yield
    finally:
        for interrupt, handler in previous.items():
            signal.signal(interrupt, handler)
        for number in held:
            signal.raise_signal(number)


class ManagedProcess:
    """A child process started by us, with stdout/stderr appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        wrap: Callable[[Sequence[str]], list[str]] | None = None,
    ) -> None:
        """``wrap``: turns the argv into the one to exec, e.g. a lab host's
        ``ip netns exec`` prefix (:meth:`chaos.launch.netns.Host.wrap`)."""
        self.name = name
        self.argv = wrap(argv) if wrap is not None else list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def start(self) -> None:
        if self.running():
            raise LaunchError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        try:
            # A Ctrl-C (or the drill's SIGTERM) raised inside Popen, after the fork,
            # would leave a child nobody knows of: it waits until the child is ours.
            with _interrupts_held():
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    # Own process group: a Ctrl-C in the terminal reaches the
                    # harness, which then stops its children in order.
                    start_new_session=True,
                )
        except FileNotFoundError as exc:
            self._close_log()
            raise LaunchError(f"{self.name}: executable not found: {self.argv[0]}") from exc

    def wait_ready(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``ready`` until it holds; raise :class:`LaunchError` with the log's tail
        if the process exits first or the deadline passes."""
        try:
            wait_for(lambda: ready() or not self.running(), timeout=timeout, what=what)
        except LaunchError as exc:
            raise LaunchError(f"{exc}\n{self.tail()}") from exc
        if not self.running():
            raise LaunchError(f"{self.name} exited at start-up:\n{self.tail()}")

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def signal(self, signum: int) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signum)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL and reap: the kernel closes every socket the process held."""
        if self._popen is None:
            return
        self.signal(signal.SIGCONT)  # a stopped process must be able to die
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=10)
        self._close_log()

    def stop(self, grace: float = 10.0, signum: int | None = None) -> None:
        """SIGTERM (or ``signum``), wait up to ``grace`` seconds, then SIGKILL."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM if signum is None else signum)
            try:
                self._popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def tail(self, lines: int = 20) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
