"""What the executor is given (:class:`ExecutorDeps`) and what it keeps (:class:`AgentState`).

deps = ExecutorDeps(name="c1", service=client, issuer=router, pki=pki, lease=elector,
                    ca_errors=(CAError,), is_retryable=is_retryable)
state = AgentState()               # written by the executor, read by each snapshot
deps.ca_deadline()                 # a CA call's deadline, never past the lease
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.agent.ports import Issuer, Lease, Pki
from connector.agent.snapshot import Health
from connector.metrics import ConnectorMetrics
from connector.service_client import ServiceClient

__all__ = ["AgentState", "ExecutorDeps"]


@dataclass
class AgentState:
    """The agent's own bookkeeping; written by the executor, read into snapshots."""

    registered_epoch: int | None = None
    reconciled_epoch: int | None = None
    last_heartbeat_at: float | None = None
    last_revocation_poll_at: float | None = None
    revocations_backlog: bool = False
    last_reconcile_at: float | None = None
    # A standby's last sweep of the keys it watched while leading.
    last_late_sweep_at: float | None = None
    rejected_epoch: int | None = None
    # Set once the service refused us as revoked (403 connector_revoked): never cleared.
    revoked: str | None = None
    service_retry_at: float | None = None
    ca_retry_at: float | None = None
    reported_health: Health | None = None
    elected_at: float | None = None
    stopped: bool = False
    # Orphans whose CA was down during the last reconciliation: sweep again soon.
    orphans_pending: bool = False
    # Older intents the last reconciliation could not search for (certdb down).
    intents_waiting: int = 0
    # Work-aware leadership: the standby we asked to take over, and when a
    # hand-over was last refused (the cluster's yield budget spent) and why.
    handing_over_to: str | None = None
    handing_over_at: float | None = None
    # (until when, why): no new attempt before then (long when the budget said no).
    yield_refused: tuple[float, str] | None = None
    last_yield: tuple[float, str] | None = None  # (when, what was unreachable)
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ExecutorDeps:
    name: str
    service: ServiceClient
    issuer: Issuer
    pki: Pki
    lease: Lease
    ca_errors: tuple[type[BaseException], ...]
    is_retryable: Callable[[BaseException], bool]
    batch_size: int = 100
    poll_wait_s: float = 1.0
    workers: int = 4
    # Requests in hand at most, whatever their stage (connector/agent/hand.py).
    max_in_hand: int = 64
    ca_deadline_s: float = 5.0
    backoff_s: float = 0.5
    # Seconds a fresh lease is good for at most; caps every CA deadline.
    lease_budget_s: float = 1.0
    metrics: ConnectorMetrics | None = None
    details: Callable[[], Mapping[str, Any]] = dict
    clock: Callable[[], float] = time.monotonic
    # Told the outcome of every service call (True: it answered), for reachability.
    on_service_outcome: Callable[[bool], None] = lambda _ok: None
    # A CA answered an issue (its name): the reach record, as for the service.
    on_ca_answer: Callable[[str], None] = lambda _ca: None
    # Whether the latest outcome with a CA (its name), a reach probe's, was a failure:
    # a reconcile turn then defers its revocations there rather than wait on a hung
    # CA at each call's deadline (the reach record; False: not known to fail).
    ca_failing: Callable[[str], bool] = lambda _ca: False
    # The longest one of the loop's own service calls may block it beyond a
    # long-poll's wait (None: the client's timeout): a link that swallows packets
    # must free the loop before a hand-over is due (work-aware leadership).
    loop_call_timeout_s: float | None = None
    # How long keys given up on are searched again for late certificates.
    late_window_s: float = 30.0
    # Service connections a standby keeps open for a takeover (0: none kept).
    warm_connections: int = 4

    def ca_deadline(self) -> float:
        """Absolute monotonic deadline for one CA call: never beyond the lease."""
        return self.clock() + min(self.ca_deadline_s, self.lease_budget_s)

    def count(self, kind: str, result: str, template: str, ca: str) -> None:
        """One request or revocation processed, in the metrics (when there are any)."""
        if self.metrics is not None:
            self.metrics.request_processed(kind=kind, result=result, template=template, ca=ca)
