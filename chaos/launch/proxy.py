"""A TCP proxy whose link faults change at run time (the Toxiproxy idea, in asyncio).

The kernels we run on have no ``netem``, so latency, loss of answers and resets
are made in user space, between a client and the server it was pointed at::

    with FaultProxy(("127.0.0.1", cfssl_port)) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"          # give the client this
        proxy.set(LinkFaults(down=Toxics(blackhole=True)))  # the server acts, no answer
        proxy.set(LinkFaults(up=Toxics(latency_s=0.04), down=Toxics(latency_s=0.04)))
        proxy.set(LinkFaults(reset=True))                    # RST every connection
        proxy.clear()

``up`` is client → server, ``down`` server → client. Faults apply to bytes
read after the change, on open connections too, so a test can let a request
through and lose its answer. The proxy runs its event loop in a daemon thread
and binds loopback only; :attr:`FaultProxy.stats` counts what it forwarded
and dropped so nothing it does is hidden from a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["FaultProxy", "LinkFaults", "ProxyStats", "Toxics"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Toxics:
    """What happens to bytes flowing one way.

    ``latency_s`` ± ``jitter_s`` (uniform) delays each chunk, order kept;
    ``rate_bps`` caps bytes per second (0: no cap); ``blackhole`` reads and
    discards (the peer sees silence, not an error).
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0
    rate_bps: int = 0
    blackhole: bool = False

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.jitter_s < 0 or self.rate_bps < 0:
            raise ValueError(f"faults cannot be negative: {self}")
        if self.jitter_s > self.latency_s:
            raise ValueError(f"jitter {self.jitter_s} s exceeds latency {self.latency_s} s")


@dataclass(frozen=True)
class LinkFaults:
    """Both directions of a link, and whether it resets (RST) every connection."""

    up: Toxics = field(default_factory=Toxics)
    down: Toxics = field(default_factory=Toxics)
    reset: bool = False


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    forwarded_bytes: int = 0
    discarded_bytes: int = 0


class FaultProxy:
    """Listen on a loopback port and forward to ``upstream`` under :class:`LinkFaults`."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen_host: str = "127.0.0.1",
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.listen_host = listen_host
        self.stats = ProxyStats()
        self._faults = LinkFaults()
        self._rng = rng or random.Random()
        self._clock = clock
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # -- life -----------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=5)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the proxy's thread so far; 0.0 when not running."""
        tid = self._thread.native_id
        if tid is None or not self._thread.is_alive():
            return 0.0
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        # Fields 14 and 15 (utime, stime) of stat(5), counted after the ")" as 12 and 13.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # -- faults ---------------------------------------------------------------

    @property
    def faults(self) -> LinkFaults:
        return self._faults

    def set(self, faults: LinkFaults) -> None:
        """Apply ``faults`` from now on; ``reset`` also ends the open connections."""
        self._faults = faults
        if faults.reset:
            self._loop.call_soon_threadsafe(self._reset_all)

    def clear(self) -> None:
        self.set(LinkFaults())

    # -- inside the loop ------------------------------------------------------

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            _abort_with_rst(writer)
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self._faults.reset:
            _abort_with_rst(client_w)
            self.stats.resets += 1
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort_with_rst(client_w)
            return
        self._writers |= {client_w, server_w}
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w, lambda: self._faults.up)),
            asyncio.create_task(self._pump(server_r, client_w, lambda: self._faults.down)),
        ]
        # One side closing ends the other's pump once its queue drains.
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in (client_w, server_w):
            self._writers.discard(writer)
            writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        toxics: Callable[[], Toxics],
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer, toxics))
        last_due = 0.0
        try:
            while chunk := await reader.read(_CHUNK):
                now_toxics = toxics()
                if now_toxics.blackhole:
                    self.stats.discarded_bytes += len(chunk)
                    continue
                delay = now_toxics.latency_s
                if now_toxics.jitter_s:
                    delay += self._rng.uniform(-now_toxics.jitter_s, now_toxics.jitter_s)
                # Never deliver before an earlier chunk: TCP keeps order.
                last_due = max(last_due, self._clock() + delay)
                queue.put_nowait((last_due, chunk))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(Exception):
                await sender

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        toxics: Callable[[], Toxics],
    ) -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            wait = due - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            rate = toxics().rate_bps
            if rate:
                await asyncio.sleep(len(chunk) / rate)
            # Counted before the write, so a peer that has read the bytes sees them counted.
            self.stats.forwarded_bytes += len(chunk)
            try:
                writer.write(chunk)
                await writer.drain()
            except (ConnectionError, OSError):
                return


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close so the peer reads a reset, not an orderly end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
