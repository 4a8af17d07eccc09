"""Every Prometheus metric a connector exports, defined in one place.

    metrics = ConnectorMetrics(name="pfx-a", cluster="prod")   # own registry
    metrics.set_role("leader", reason="elected")
    metrics.set_epoch(7)
    metrics.set_session_state("CONNECTED")                   # kazoo's KazooState names work
    metrics.set_fast_path("unavailable")                     # election.FastPath values
    with metrics.time_issuance(ca="primary"):
        ...
    metrics.request_processed(kind="issue", result="delivered", template="wifi", ca="primary")
    metrics.observe_key_generation(0.071, key_type="rsa2048")  # thread CPU seconds
    metrics.observe_issue_cpu("ca", 0.002)        # a request's CA call cost its thread 2 ms
    metrics.set_ca_state("primary", up=True, circuit="closed")
    metrics.set_pending("issue", 12)
    metrics.mark_poll_success()
    metrics.set_certificate_expiry(cert.not_valid_after_utc, not_before=cert.not_valid_before_utc)

The registry (``metrics.registry``) is what :mod:`connector.health` serves on
``/metrics``. Names are a public contract: ``deploy/prometheus`` rules and the
``deploy/grafana`` dashboard use them, and a test checks that every name they
mention is exported here. Label values must stay low-cardinality (CA names,
template names, fixed result and reason words), never request or device ids.
"""

from __future__ import annotations

import functools
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from connector._version import __version__

__all__ = [
    "CIRCUIT_STATES",
    "FAST_PATH_STATES",
    "KEYGEN_CPU_BUCKETS",
    "LATENCY_BUCKETS",
    "PLACEMENT_MOVES",
    "REQUEST_KINDS",
    "ROLES",
    "SESSION_STATES",
    "TAKEOVER_BUCKETS",
    "TAKEOVER_SLO_SECONDS",
    "ZK_SEATS",
    "ConnectorMetrics",
]

ROLES = ("standby", "leader", "suspended", "stopped")
# "connecting" first: prometheus_client starts an Enum in its first state, and
# a connector that has not reached ZooKeeper yet must not look connected.
SESSION_STATES = ("connecting", "connected", "suspended", "lost")
CIRCUIT_STATES = ("closed", "open", "half_open")
# election.FastPath's values; "idle" first, the state before anything is known.
FAST_PATH_STATES = ("idle", "armed", "unavailable")
# election.ZkSeat's words: what the ZooKeeper server on this member's host is.
ZK_SEATS = ("unknown", "follower", "leader")
PLACEMENT_MOVES = ("hand_over", "requeue", "refused")
REQUEST_KINDS = ("issue", "revoke")

# CA round trips plus key generation: milliseconds for EC keys, seconds for
# RSA 4096 or a slow CA; the tail up to the retry budget.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The failover SLO is a bucket boundary so the alert can count slower takeovers
# exactly: deploy/prometheus/alerts.yml uses le="5.0".
TAKEOVER_SLO_SECONDS = 5.0
TAKEOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, TAKEOVER_SLO_SECONDS, 10.0, 30.0, 60.0)
# CPU one private key costs: under a millisecond for EC, tens of milliseconds
# for RSA-2048, about a second for RSA-4096 on a slow core.
KEYGEN_CPU_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class ConnectorMetrics:
    """The connector's metrics, registered on ``registry`` (a fresh one by default).

    A fresh registry also carries the process and platform collectors, so one
    scrape shows memory, file descriptors and start time next to the role.
    Pass an existing registry to share it; several instances may live in one
    process (tests run three connectors) as long as each has its own registry.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        name: str = "",
        cluster: str = "",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.registry = registry
        self._wall_clock = wall_clock
        # What the state gauges show, per (gauge, label): the loop reports them every
        # turn and they rarely change, and labels() plus set() cost a saturated
        # leader ~0.1 ms a turn (cProfile of the flow bench's leader).
        self._shown: dict[tuple[str, str], object] = {}
        self._showing = threading.Lock()
        self._role = "standby"

        self.role = Enum(
            "pfxha_connector_role",
            "Role of this connector in the election: exactly one leader per cluster.",
            states=list(ROLES),
            registry=registry,
        )
        self.epoch = Gauge(
            "pfxha_connector_epoch",
            "Fencing epoch of the current leadership as this connector knows it "
            "(its own while it leads).",
            registry=registry,
        )
        self.leadership_transitions = Counter(
            "pfxha_connector_leadership_transitions",
            "Role changes of this connector, by the role entered and the reason.",
            ["role", "reason"],
            registry=registry,
        )
        self.takeover_duration = Histogram(
            "pfxha_connector_takeover_duration_seconds",
            "Time from this connector winning the election to being registered with "
            "the service under its new epoch (observed once per leadership).",
            buckets=TAKEOVER_BUCKETS,
            registry=registry,
        )
        self.zookeeper_session_state = Enum(
            "pfxha_connector_zookeeper_session_state",
            "State of this connector's ZooKeeper session.",
            states=list(SESSION_STATES),
            registry=registry,
        )
        self.fast_path_state = Enum(
            "pfxha_connector_fast_path_state",
            "Crash detection of the leader as this connector sees it: armed (a connection "
            "to the leader's liveness socket, verified by its greeting, is held: a crash "
            "is noticed at once), unavailable (no verified connection: a crash waits for "
            "the ZooKeeper session timeout), idle (leading, or the fast path is off).",
            states=list(FAST_PATH_STATES),
            registry=registry,
        )
        self.requests_processed = Counter(
            "pfxha_connector_requests_processed",
            "Certificate requests (kind=issue) and revocations (kind=revoke) finished "
            "by this connector, by result, template and issuing CA.",
            ["kind", "result", "template", "ca"],
            registry=registry,
        )
        self.issuance_duration = Histogram(
            "pfxha_connector_issuance_duration_seconds",
            "Time to issue one certificate: key generation, CSR, CA round trip, PFX "
            "and envelope, upload.",
            ["ca"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.revocation_duration = Histogram(
            "pfxha_connector_revocation_duration_seconds",
            "Time to revoke one certificate at its issuing CA and acknowledge it.",
            ["ca"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.key_generation_cpu = Histogram(
            "pfxha_connector_key_generation_cpu_seconds",
            "CPU time (of the generating thread) one private key cost, pooled or made on "
            "demand, by key type: the floor under every issuance's cost.",
            ["key_type"],
            buckets=KEYGEN_CPU_BUCKETS,
            registry=registry,
        )
        self.issue_cpu = Counter(
            "pfxha_connector_issue_cpu_seconds",
            "CPU time the issuing threads spent per stage of a request (key, csr, intent, "
            "ca, pfx, seal, upload, other): where a leader's cores go beyond its keys.",
            ["stage"],
            registry=registry,
        )
        self.keys_pooled = Gauge(
            "pfxha_connector_keys_pooled",
            "Private keys ready in the key pool, by key type. A standby with an empty pool "
            "makes its first keys on demand after a takeover (tens of milliseconds each).",
            ["key_type"],
            registry=registry,
        )
        self.keys_pool_size = Gauge(
            "pfxha_connector_keys_pool_size",
            "How many keys the pool keeps ready per key type when full (loop.keypool_size).",
            ["key_type"],
            registry=registry,
        )
        self.ca_up = Gauge(
            "pfxha_connector_ca_up",
            "1 when the issuing CA answered its last health check, else 0.",
            ["ca"],
            registry=registry,
        )
        self.ca_circuit_state = Enum(
            "pfxha_connector_ca_circuit_state",
            "Circuit breaker state per issuing CA (open: calls are not attempted).",
            ["ca"],
            states=list(CIRCUIT_STATES),
            registry=registry,
        )
        self.reachable = Gauge(
            "pfxha_connector_reachable",
            "1 when this member's last probe of the target (service, ca:<name>) was "
            "answered, else 0 (every member probes; see work-aware leadership).",
            ["target"],
            registry=registry,
        )
        self.yields = Counter(
            "pfxha_connector_yields",
            "Voluntary hand-overs by this member as leader, by what it could not reach.",
            ["dependency"],
            registry=registry,
        )
        self.coordination_problems = Counter(
            "pfxha_connector_coordination_problems",
            "Coordination data no member would write, repaired or dropped by this member "
            "(kind: epoch, leader, switchover): someone with ZooKeeper write access "
            "tampered with the cluster's nodes.",
            ["kind"],
            registry=registry,
        )
        self.yields_refused = Counter(
            "pfxha_connector_yields_refused",
            "Hand-overs this leader wanted but the cluster's yield budget refused.",
            registry=registry,
        )
        self.zk_seat = Enum(
            "pfxha_connector_zk_seat",
            "What the ZooKeeper server on this member's host is (placement; unknown: "
            "placement off or the server not answering srvr).",
            states=list(ZK_SEATS),
            registry=registry,
        )
        self.placement_moves = Counter(
            "pfxha_connector_placement_moves",
            "Placement moves by this member (hand_over: as leader on the ZooKeeper "
            "leader's host; requeue: to the back of the line; refused: the placement "
            "budget was spent).",
            ["move"],
            registry=registry,
        )
        self.reconcile_ready = Gauge(
            "pfxha_connector_reconcile_ready",
            "1 when reconciliation can search this CA (its certdb answered the last call "
            "or probe, or reconcile is off on purpose), else 0: a deposed leader's "
            "intents at this CA wait, and the connector is not ready.",
            ["ca"],
            registry=registry,
        )
        self.reconcile_off = Gauge(
            "pfxha_connector_reconcile_off",
            '1 when the operator set reconcile = "off" for this CA: orphans a deposed '
            "leader left there are never searched for.",
            ["ca"],
            registry=registry,
        )
        self.intents_unreconciled = Gauge(
            "pfxha_connector_intents_unreconciled",
            "Older epochs' intents the last reconciliation could not settle because a "
            "certdb did not answer (they stay in flight, never issued anew, until it does).",
            registry=registry,
        )
        self.pending_requests = Gauge(
            "pfxha_connector_pending_requests",
            "Requests waiting at the service, as last seen by this connector while "
            "leading (0 on standbys).",
            ["kind"],
            registry=registry,
        )
        self.last_successful_poll = Gauge(
            "pfxha_connector_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll of the service (0: never).",
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "pfxha_connector_certificate_expiry_timestamp_seconds",
            "Unix time at which this connector's own client certificate expires (0: not enrolled).",
            registry=registry,
        )
        self.certificate_not_before = Gauge(
            "pfxha_connector_certificate_not_before_timestamp_seconds",
            "Unix time from which this connector's own client certificate is valid (0: not "
            "enrolled); with the expiry it gives the lifetime the expiry alerts are relative to.",
            registry=registry,
        )
        self.build_info = Info(
            "pfxha_connector_build",
            "Version of the connector software and this instance's identity.",
            registry=registry,
        )
        self.build_info.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "name": name,
                "cluster": cluster,
            }
        )
        for kind in REQUEST_KINDS:
            # Present from the first scrape, so rates and the backlog rule see 0
            # rather than nothing.
            self.pending_requests.labels(kind=kind).set(0)

    # Election ----------------------------------------------------------

    @property
    def current_role(self) -> str:
        return self._role

    def set_role(self, role: str, reason: str) -> None:
        """Enter ``role``; a change is counted under ``reason`` (a fixed word).

        Leaving leadership zeroes the backlog gauges: a standby does not poll,
        and a stale number would be summed with the new leader's.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if role == self._role:
            return
        self._role = role
        self.role.state(role)
        self.leadership_transitions.labels(role=role, reason=reason).inc()
        if role != "leader":
            for kind in REQUEST_KINDS:
                self.pending_requests.labels(kind=kind).set(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def watch_key_pool(
        self, available: Callable[[str], int], key_types: Iterable[str], size: int
    ) -> None:
        """``pfxha_connector_keys_pooled`` reads ``available(key_type)`` at each scrape."""
        for key_type in key_types:
            self.keys_pool_size.labels(key_type=key_type).set(size)
            self.keys_pooled.labels(key_type=key_type).set_function(
                functools.partial(_as_float, available, key_type)
            )

    def observe_takeover(self, seconds: float) -> None:
        self.takeover_duration.observe(seconds)

    def set_session_state(self, state: str) -> None:
        """Accepts ours (``connected``) or kazoo's (``CONNECTED``, ``CONNECTED_RO``)."""
        normalized = state.lower()
        if normalized == "connected_ro":
            # Read-only means cut from the quorum: for leadership it is as bad
            # as suspended.
            normalized = "suspended"
        if normalized not in SESSION_STATES:
            raise ValueError(
                f"unknown session state {state!r}; expected one of {', '.join(SESSION_STATES)}"
            )
        self.zookeeper_session_state.state(normalized)

    def set_fast_path(self, state: str) -> None:
        if state not in FAST_PATH_STATES:
            raise ValueError(
                f"unknown fast path state {state!r}; expected one of {', '.join(FAST_PATH_STATES)}"
            )
        self.fast_path_state.state(state)

    # Work --------------------------------------------------------------

    def request_processed(self, *, kind: str, result: str, template: str, ca: str) -> None:
        if kind not in REQUEST_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(REQUEST_KINDS)}")
        self.requests_processed.labels(kind=kind, result=result, template=template, ca=ca).inc()

    def observe_issuance(self, seconds: float, *, ca: str) -> None:
        self.issuance_duration.labels(ca=ca).observe(seconds)

    def observe_revocation(self, seconds: float, *, ca: str) -> None:
        self.revocation_duration.labels(ca=ca).observe(seconds)

    def observe_key_generation(self, cpu_seconds: float, *, key_type: str) -> None:
        self.key_generation_cpu.labels(key_type=key_type).observe(cpu_seconds)

    def observe_issue_cpu(self, stage: str, cpu_seconds: float) -> None:
        self.issue_cpu.labels(stage=stage).inc(cpu_seconds)

    @contextmanager
    def time_issuance(self, *, ca: str) -> Iterator[None]:
        with self.issuance_duration.labels(ca=ca).time():
            yield

    @contextmanager
    def time_revocation(self, *, ca: str) -> Iterator[None]:
        with self.revocation_duration.labels(ca=ca).time():
            yield

    def _show(self, gauge: str, label: str, value: object, show: Callable[[], None]) -> None:
        """``show()`` unless the gauge shows ``value`` already (one lock: two threads
        reporting at once must not leave the memo and the gauge apart)."""
        key = (gauge, label)
        with self._showing:
            if self._shown.get(key) == value:
                return
            show()
            self._shown[key] = value

    def set_ca_state(self, ca: str, *, up: bool, circuit: str) -> None:
        if circuit not in CIRCUIT_STATES:
            raise ValueError(
                f"unknown circuit state {circuit!r}; expected one of {', '.join(CIRCUIT_STATES)}"
            )

        def show() -> None:
            self.ca_up.labels(ca=ca).set(1 if up else 0)
            self.ca_circuit_state.labels(ca=ca).state(circuit)

        self._show("ca_state", ca, (up, circuit), show)

    def set_reachable(self, target: str, ok: bool) -> None:
        self._show(
            "reachable", target, ok, lambda: self.reachable.labels(target=target).set(int(ok))
        )

    def yielded(self, dependency: str) -> None:
        self.yields.labels(dependency=dependency[:40]).inc()

    def coordination_problem(self, kind: str) -> None:
        self.coordination_problems.labels(kind=kind).inc()

    def set_zk_seat(self, seat: str) -> None:
        self.zk_seat.state(seat if seat in ZK_SEATS else "unknown")

    def placement_moved(self, move: str) -> None:
        if move not in PLACEMENT_MOVES:
            raise ValueError(f"unknown placement move {move!r}")
        self.placement_moves.labels(move=move).inc()

    def yield_refused(self) -> None:
        self.yields_refused.inc()

    def set_reconcile_state(self, ca: str, *, ready: bool, off: bool) -> None:
        def show() -> None:
            self.reconcile_ready.labels(ca=ca).set(int(ready))
            self.reconcile_off.labels(ca=ca).set(int(off))

        self._show("reconcile_state", ca, (ready, off), show)

    def set_intents_unreconciled(self, count: int) -> None:
        self.intents_unreconciled.set(count)

    def set_pending(self, kind: str, depth: int) -> None:
        if kind not in REQUEST_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(REQUEST_KINDS)}")
        self.pending_requests.labels(kind=kind).set(depth)

    def mark_poll_success(self, at: float | None = None) -> None:
        """Record a successful poll now (or at Unix time ``at``)."""
        self.last_successful_poll.set(self._wall_clock() if at is None else at)

    def set_certificate_expiry(
        self, not_after: datetime | float, not_before: datetime | float | None = None
    ) -> None:
        """The connector certificate's notAfter (and notBefore), as aware datetimes or Unix
        times."""
        self.certificate_expiry.set(_unix_time(not_after, "not_after"))
        if not_before is not None:
            self.certificate_not_before.set(_unix_time(not_before, "not_before"))


def _unix_time(value: datetime | float, name: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (use not_valid_{name[4:]}_utc)")
        return value.timestamp()
    return value


def _as_float(read: Callable[[str], int], key: str) -> float:
    return float(read(key))
