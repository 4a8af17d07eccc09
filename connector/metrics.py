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
``/metrics``. The metric families themselves (names, help texts, label words,
buckets) are defined in one place, :mod:`connector._metric_defs`; this module
adds the calls above and is the one to import. Names are a public contract:
``deploy/prometheus`` rules and the ``deploy/grafana`` dashboard use them, and a
test checks that every name they mention is exported here. Label values must
stay low-cardinality (CA names, template names, fixed result and reason words),
never request or device ids.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

# The constants are part of this module's public names; they live with the
# definitions that use them as label words and buckets.
from connector._metric_defs import (
    CIRCUIT_STATES,
    FAST_PATH_STATES,
    KEYGEN_CPU_BUCKETS,
    LATENCY_BUCKETS,
    ORPHAN_FINDS,
    PLACEMENT_MOVES,
    REQUEST_KINDS,
    ROLES,
    SESSION_STATES,
    TAKEOVER_BUCKETS,
    TAKEOVER_SLO_SECONDS,
    ZK_SEATS,
    MetricFamilies,
)

__all__ = [
    "CIRCUIT_STATES",
    "FAST_PATH_STATES",
    "KEYGEN_CPU_BUCKETS",
    "LATENCY_BUCKETS",
    "ORPHAN_FINDS",
    "PLACEMENT_MOVES",
    "REQUEST_KINDS",
    "ROLES",
    "SESSION_STATES",
    "TAKEOVER_BUCKETS",
    "TAKEOVER_SLO_SECONDS",
    "ZK_SEATS",
    "ConnectorMetrics",
]


class ConnectorMetrics(MetricFamilies):
    """The connector's metrics, registered on ``registry`` (a fresh one by default).

    A fresh registry also carries the process and platform collectors, so one
    scrape shows memory, file descriptors and start time next to the role.
    Pass an existing registry to share it; several instances may live in one
    process (tests run three connectors) as long as each has its own registry.

    The metric attributes (``role``, ``issue_cpu``, ``ca_up``, ...) and
    ``registry`` come from :class:`connector._metric_defs.MetricFamilies`; this
    class adds the setters, which check label words and skip unchanged gauges.
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
        super().__init__(registry, name=name, cluster=cluster)
        self._wall_clock = wall_clock
        # What the state gauges show, per (gauge, label): the loop reports them every
        # turn and they rarely change; labels() plus set() were ~30 % of the loop's
        # 0.27 ms snapshot on a saturated leader (cProfile of one flow run).
        self._shown: dict[tuple[str, str], object] = {}
        self._showing = threading.Lock()
        self._role = "standby"

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

    def watch_certdb_index(self, indexed_rows: Callable[[str], int], cas: Iterable[str]) -> None:
        """``pfxha_connector_certdb_indexed_rows`` reads ``indexed_rows(ca)`` at each scrape."""
        for ca in cas:
            self.certdb_indexed_rows.labels(ca=ca).set_function(
                functools.partial(_as_float, indexed_rows, ca)
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

    def orphans_revoked_by(self, found: str, count: int) -> None:
        """``count`` orphans revoked; ``found``: ``reconcile`` or ``late``."""
        if found not in ORPHAN_FINDS:
            raise ValueError(f"unknown find {found!r}; expected one of {', '.join(ORPHAN_FINDS)}")
        if count:
            self.orphans_revoked.labels(found=found).inc(count)

    def watch_late_keys(self, count: Callable[[], int]) -> None:
        """Export ``count()`` (read at each scrape) as the keys watched for late certificates."""
        self.late_keys_watched.set_function(count)

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
