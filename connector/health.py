"""The connector's only listening port: ``/metrics``, ``/healthz`` and ``/readyz``.

    metrics = ConnectorMetrics(name="pfx-a")
    server = HealthServer(metrics.registry, host="127.0.0.1", port=9464)
    server.start()                       # a daemon thread; port=0 picks a free port
    server.set_provider(agent.health_snapshot)   # once the agent exists
    ...
    server.stop()

The agent hands over a :class:`HealthSnapshot` through a provider callable;
this module only judges it (:func:`evaluate`, pure) and serves the verdict:

- ``/healthz`` (liveness): the process answers and its loop turned within
  ``max_loop_age`` seconds. A stuck loop is worth a restart; a lost ZooKeeper
  session is not (restarting would not bring ZooKeeper back).
- ``/readyz`` (readiness): a leader is ready when its lease is fresh and at
  least one issuing CA is reachable; a standby when its ZooKeeper session is
  connected. Suspended and stopped connectors are not ready, and neither is
  one that cannot reconcile: a CA whose certdb does not answer (or refuses
  our credentials) means a deposed leader's orphans there cannot be found.

Both answer 200 or 503 with a small JSON body saying why. Before a provider is
set the process is live (it answers) but not ready.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_LOOP_AGE",
    "DEFAULT_PORT",
    "HealthReport",
    "HealthServer",
    "HealthSnapshot",
    "SnapshotProvider",
    "evaluate",
]

DEFAULT_HOST = "127.0.0.1"
# 9464: the port OpenTelemetry's Prometheus exporter made customary for
# application metrics; deploy files bind 0.0.0.0:9464.
DEFAULT_PORT = 9464
DEFAULT_MAX_LOOP_AGE = 30.0


@dataclass(frozen=True)
class HealthSnapshot:
    """What the agent knows about itself at one instant.

    ``last_loop_turn`` is a reading of the same monotonic clock the server was
    given (``time.monotonic`` by default).
    """

    role: str
    last_loop_turn: float
    session_connected: bool
    lease_fresh: bool = False
    cas_reachable: int = 0
    epoch: int = 0
    # "<ca>: <why>" for each CA whose certdb reconciliation cannot search now.
    reconcile_problems: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


SnapshotProvider = Callable[[], HealthSnapshot]


@dataclass(frozen=True)
class HealthReport:
    live: bool
    ready: bool
    reasons: tuple[str, ...]

    def body(self, snapshot: HealthSnapshot | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "live": self.live,
            "ready": self.ready,
            "reasons": list(self.reasons),
        }
        if snapshot is not None:
            out["snapshot"] = asdict(snapshot)
        return out


def evaluate(snapshot: HealthSnapshot | None, *, now: float, max_loop_age: float) -> HealthReport:
    """Liveness and readiness of ``snapshot`` at monotonic time ``now``."""
    if snapshot is None:
        return HealthReport(live=True, ready=False, reasons=("starting: no agent attached yet",))
    reasons: list[str] = []
    loop_age = now - snapshot.last_loop_turn
    live = loop_age <= max_loop_age
    if not live:
        reasons.append(f"loop last turned {loop_age:.1f}s ago (limit {max_loop_age:.1f}s)")
    if snapshot.role == "leader":
        ready = snapshot.lease_fresh and snapshot.cas_reachable >= 1
        if not snapshot.lease_fresh:
            reasons.append("leader cannot prove its lease is fresh")
        if snapshot.cas_reachable < 1:
            reasons.append("leader reaches no issuing CA")
    elif snapshot.role == "standby":
        ready = snapshot.session_connected
        if not ready:
            reasons.append("standby has no connected ZooKeeper session")
    else:
        ready = False
        reasons.append(f"role is {snapshot.role}")
    if snapshot.reconcile_problems:
        ready = False
        reasons += [f"cannot reconcile at {problem}" for problem in snapshot.reconcile_problems]
    return HealthReport(live=live, ready=ready and live, reasons=tuple(reasons))


class HealthServer:
    """An HTTP server on one thread serving metrics and the two probes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        provider: SnapshotProvider | None = None,
        max_loop_age: float = DEFAULT_MAX_LOOP_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_loop_age <= 0:
            raise ValueError(f"max_loop_age must be > 0 seconds, got {max_loop_age}")
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._provider = provider
        self.max_loop_age = max_loop_age
        self._clock = clock
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_provider(self, provider: SnapshotProvider | None) -> None:
        self._provider = provider

    def report(self) -> tuple[HealthReport, HealthSnapshot | None]:
        """Ask the provider and judge; a provider that raises makes us not live."""
        provider = self._provider
        if provider is None:
            return evaluate(None, now=self._clock(), max_loop_age=self.max_loop_age), None
        try:
            snapshot = provider()
        except Exception as exc:  # the probe must answer, whatever the agent does
            return HealthReport(False, False, (f"health provider failed: {exc!r}",)), None
        return evaluate(snapshot, now=self._clock(), max_loop_age=self.max_loop_age), snapshot

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("health server already started")
        self._httpd = ThreadingHTTPServer((self.host, self._requested_port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="pfxha-health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._metrics()
                elif path == "/healthz":
                    report, snapshot = server.report()
                    self._json(200 if report.live else 503, report.body(snapshot))
                elif path == "/readyz":
                    report, snapshot = server.report()
                    self._json(200 if report.ready else 503, report.body(snapshot))
                else:
                    self._json(
                        404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]}
                    )

            def _metrics(self) -> None:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                payload = encoder(server.registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                # Probes every few seconds would drown the connector's own log.
                return

        return Handler
