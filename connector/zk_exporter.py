"""ZooKeeper health for Prometheus, read from each server's ``mntr`` at scrape time.

    servers = parse_servers("zk1:2181,zk2:2181,zk3:2181")
    registry = CollectorRegistry()
    registry.register(ZooKeeperCollector(servers, timeout=1.0))
    exporter = serve(registry, "127.0.0.1", 9141)    # GET /metrics
    ...
    exporter.close()

``pfxha zk-exporter`` runs this (connector/cli/_zk_exporter.py). Every scrape
asks every server ``mntr`` (a four-letter word the servers must whitelist,
``4lw.commands.whitelist``), all at once, each within ``timeout``: a server that
does not answer, refuses the word or answers garbage is ``up 0`` with the reason
logged once per change, never an exception. No retry: the next scrape is one.

Debian's ZooKeeper 3.8.0 ships no Prometheus metrics provider (its jar "cannot
be built right now", says the package changelog), hence ``mntr``; docs/monitoring.md
says more. Exported, each with the label ``server`` (``host:port`` as configured):

- ``pfxha_zookeeper_up``: 1 when the server answered ``mntr`` (also "not
  currently serving requests": the process is up, it has no quorum).
- ``pfxha_zookeeper_server_state{state}``: 1 for the server's state, one of
  :data:`STATES` (``not_serving``: up, without a quorum); absent when down.
- ``pfxha_zookeeper_outstanding_requests``: requests queued in the server.
- ``pfxha_zookeeper_request_latency_seconds`` (summary: ``_count``, ``_sum``):
  every request the server finished since it started (reads plus writes);
  ``rate(_sum) / rate(_count)`` is the average over any window.
- ``pfxha_zookeeper_max_latency_seconds``: the slowest request since the server
  started (ZooKeeper keeps no windowed maximum; it only ever rises).
- ``pfxha_zookeeper_alive_connections``: client connections.

All of it comes from a pure :func:`parse_mntr` of the reply text.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "STATES",
    "Exporter",
    "MntrReading",
    "ZkExporterError",
    "ZooKeeperCollector",
    "parse_mntr",
    "parse_servers",
    "read_mntr",
    "serve",
]

log = logging.getLogger(__name__)

STATES = ("leader", "follower", "observer", "standalone", "read-only", "not_serving")
_NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
_MAX_REPLY = 4 * 1024 * 1024  # mntr is ~50 kB on 3.8; a server sending more is not one


class ZkExporterError(ValueError):
    """A configuration the exporter cannot run with (a bad server list)."""


@dataclass(frozen=True)
class MntrReading:
    """What one ``mntr`` reply says; ``up`` False with ``reason`` when it says nothing usable."""

    up: bool
    reason: str = ""
    state: str | None = None
    outstanding_requests: float | None = None
    latency_count: float | None = None
    latency_sum_ms: float | None = None
    max_latency_ms: float | None = None
    alive_connections: float | None = None


def parse_servers(hosts: str) -> list[tuple[str, int]]:
    """``"zk1:2181,zk2"`` -> ``[("zk1", 2181), ("zk2", 2181)]`` (a chroot suffix is ignored)."""
    servers: list[tuple[str, int]] = []
    for item in hosts.split("/", 1)[0].split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "2181"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ZkExporterError(f"{item!r} is not host:port")
        servers.append((host, int(port)))
    if not servers:
        raise ZkExporterError(f"no ZooKeeper server in {hosts!r}")
    return servers


def _number(values: dict[str, str], key: str) -> float | None:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


def parse_mntr(reply: str) -> MntrReading:
    """The reading of one ``mntr`` reply ("" when the server did not answer)."""
    text = reply.strip()
    if not text:
        return MntrReading(up=False, reason="no answer")
    if text.startswith(_NOT_SERVING):
        return MntrReading(up=True, state="not_serving")
    if "not in the whitelist" in text or "not executed" in text:
        return MntrReading(up=False, reason=f"mntr refused: {text[:120]}")
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            values[key.strip()] = value.strip()
    state = values.get("zk_server_state")
    if state not in STATES:
        return MntrReading(up=False, reason=f"not an mntr reply: {text[:120]!r}")
    counts = [_number(values, f"zk_cnt_{kind}latency") for kind in ("read", "update")]
    sums = [_number(values, f"zk_sum_{kind}latency") for kind in ("read", "update")]
    return MntrReading(
        up=True,
        state=state,
        outstanding_requests=_number(values, "zk_outstanding_requests"),
        latency_count=None if None in counts else sum(c for c in counts if c is not None),
        latency_sum_ms=None if None in sums else sum(s for s in sums if s is not None),
        max_latency_ms=_number(values, "zk_max_latency"),
        alive_connections=_number(values, "zk_num_alive_connections"),
    )


def read_mntr(host: str, port: int, timeout: float) -> str:
    """Send ``mntr`` and return the whole reply; "" when the server does not answer in time."""
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"mntr")
            while size <= _MAX_REPLY:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode("utf-8", errors="replace")


Fetch = Callable[[str, int, float], str]


class ZooKeeperCollector(Collector):
    """A prometheus-client collector that reads every server's ``mntr`` when scraped."""

    def __init__(
        self, servers: Sequence[tuple[str, int]], *, timeout: float = 1.0, fetch: Fetch = read_mntr
    ) -> None:
        if not servers:
            raise ZkExporterError("no ZooKeeper server to watch")
        self.servers = list(servers)
        self.timeout = timeout
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(len(self.servers), thread_name_prefix="zk-mntr")
        self._last_reason: dict[str, str] = {}
        self._lock = threading.Lock()

    def read_all(self) -> dict[str, MntrReading]:
        """``"host:port"`` -> its reading, every server asked at once."""
        futures = {
            f"{host}:{port}": self._pool.submit(self._fetch, host, port, self.timeout)
            for host, port in self.servers
        }
        readings = {name: parse_mntr(future.result()) for name, future in futures.items()}
        self._log_changes(readings)
        return readings

    def _log_changes(self, readings: dict[str, MntrReading]) -> None:
        with self._lock:
            for name, reading in readings.items():
                reason = reading.reason if not reading.up else f"up, {reading.state}"
                if self._last_reason.get(name) != reason:
                    level = logging.INFO if reading.up else logging.WARNING
                    log.log(level, "ZooKeeper server %s: %s", name, reason)
                    self._last_reason[name] = reason

    def collect(self) -> Iterator[Metric]:
        readings = self.read_all()
        up = GaugeMetricFamily(
            "pfxha_zookeeper_up", "1 when the server answered mntr", labels=["server"]
        )
        state = GaugeMetricFamily(
            "pfxha_zookeeper_server_state",
            "1 for the server's state (not_serving: up without a quorum)",
            labels=["server", "state"],
        )
        gauges = {
            "outstanding_requests": GaugeMetricFamily(
                "pfxha_zookeeper_outstanding_requests",
                "requests queued in the server",
                labels=["server"],
            ),
            "max_latency_ms": GaugeMetricFamily(
                "pfxha_zookeeper_max_latency_seconds",
                "slowest request since the server started",
                labels=["server"],
            ),
            "alive_connections": GaugeMetricFamily(
                "pfxha_zookeeper_alive_connections", "client connections", labels=["server"]
            ),
        }
        latency = SummaryMetricFamily(
            "pfxha_zookeeper_request_latency_seconds",
            "requests finished since the server started (reads and writes)",
            labels=["server"],
        )
        for name, reading in readings.items():
            up.add_metric([name], 1.0 if reading.up else 0.0)
            if reading.state is not None:
                for each in STATES:
                    state.add_metric([name, each], 1.0 if each == reading.state else 0.0)
            for field, family in gauges.items():
                value = getattr(reading, field)
                if value is not None:
                    family.add_metric([name], value / 1000 if field.endswith("_ms") else value)
            if reading.latency_count is not None and reading.latency_sum_ms is not None:
                latency.add_metric(
                    [name], int(reading.latency_count), reading.latency_sum_ms / 1000
                )
        yield up
        yield state
        yield from gauges.values()
        yield latency

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Exporter:
    """A running exporter's HTTP server; ``close()`` stops it."""

    server: WSGIServer
    thread: threading.Thread
    collector: ZooKeeperCollector | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self.collector is not None:
            self.collector.close()


def serve(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    collector: ZooKeeperCollector | None = None,
) -> Exporter:
    """Serve ``registry`` on ``host:port`` (0: any free port) in a background thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return Exporter(server, thread, collector)
