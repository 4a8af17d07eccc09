"""The immutable picture of the world that :func:`connector.agent.decide.decide` reads.

The loop builds one :class:`Snapshot` per turn from the elector, the CA router
and its own bookkeeping, then hands it to the pure decision function::

    snap = Snapshot(now=clock(), standing=Standing.LEADER, epoch=7, ...)
    decision = decide(snap)

Nothing in here does I/O; building a snapshot by hand is how the unit tests
exercise every branch of the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Blocked",
    "CAView",
    "Health",
    "Snapshot",
    "Standing",
    "TemplateView",
    "standing_from_role",
]


class Standing(StrEnum):
    """The agent's view of its election role (decoupled from ``election.Role``)."""

    LEADER = "leader"
    STANDBY = "standby"
    SUSPENDED = "suspended"
    STOPPED = "stopped"


def standing_from_role(role: object) -> Standing:
    """Map an ``election.Role`` (or its name/value) to a :class:`Standing`."""
    text = str(getattr(role, "value", None) or getattr(role, "name", None) or role).lower()
    for standing in Standing:
        if standing.value == text:
            return standing
    # An unknown role never grants the right to act.
    return Standing.STOPPED


class Health(StrEnum):
    """Health as the service shows it (Intune's connector health states)."""

    HEALTHY = "healthy"
    WARNING = "warning"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CAView:
    """One issuing CA as the router sees it: breaker state and whether a call may go out."""

    name: str
    state: str  # "closed" | "open" | "half-open" (the breaker's word)

    @property
    def available(self) -> bool:
        """A closed or half-open breaker lets a call through; open means known down."""
        return self.state != "open"


@dataclass(frozen=True)
class TemplateView:
    """A template and its ordered CA list."""

    name: str
    cas: tuple[CAView, ...]

    @property
    def all_down(self) -> bool:
        return bool(self.cas) and not any(ca.available for ca in self.cas)

    @property
    def degraded(self) -> bool:
        return any(not ca.available for ca in self.cas)


@dataclass(frozen=True)
class Blocked:
    """Work this leader cannot do: a dependency it has not reached for ``for_s`` seconds.

    ``what`` is ``"service"`` or ``"template <name>"`` (every CA of it unreachable);
    ``able`` lists eligible standbys that freshly and continuously report they reach
    it (empty: it is down for everyone, as far as anyone can tell).
    """

    what: str
    for_s: float
    able: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """Everything one turn of the loop decides on. Times are monotonic seconds."""

    now: float
    standing: Standing
    # fresh_epoch() at snapshot time: an int only for a leader with a fresh lease.
    epoch: int | None
    stopping: bool = False
    # Why the service refused this connector as revoked (403), once it did.
    revoked: str | None = None
    # An epoch the service refused with 409 and we have not stepped down from yet.
    rejected_epoch: int | None = None
    registered_epoch: int | None = None
    reconciled_epoch: int | None = None
    templates: tuple[TemplateView, ...] = ()
    last_heartbeat_at: float | None = None
    heartbeat_interval_s: float = 2.0
    last_revocation_poll_at: float | None = None
    revocation_interval_s: float = 1.0
    # The last revocation poll returned a full batch: more are waiting.
    revocations_backlog: bool = False
    last_reconcile_at: float | None = None
    reconcile_interval_s: float = 30.0
    # Keys given up on that are still watched for late certificates, and when a
    # standby last swept them (a leader sweeps them with its reconciliation).
    late_watched: int = 0
    last_late_sweep_at: float | None = None
    # Back-off windows after the service or every CA was unreachable.
    service_retry_at: float | None = None
    ca_retry_at: float | None = None
    # Requests the issuing workers can take right now (issuance is pipelined).
    issue_capacity: int = 1
    # How long the election has said "leader" without a provably fresh lease,
    # and how long that may last before the lease is handed over.
    lease_unfresh_s: float = 0.0
    lease_unfresh_limit_s: float = 2.0
    # CAs whose certdb cannot be searched now (reconciliation cannot run there),
    # and older epochs' intents the last sweep had to leave waiting for them.
    reconcile_blocked: tuple[str, ...] = ()
    intents_waiting: int = 0
    # Work-aware leadership: what this leader cannot reach, for how long, and who can;
    # how long it has led; the rules (a yield threshold, a minimum time in office);
    # whether a hand-over is under way, or was refused (the yield budget is spent).
    blocked: tuple[Blocked, ...] = ()
    in_office_s: float = 0.0
    yield_after_s: float = float("inf")
    min_in_office_s: float = 0.0
    handing_over_to: str | None = None
    yield_refused: str | None = None

    @property
    def health(self) -> Health:
        """Unhealthy when every CA of some template is down or a certdb cannot be searched
        (reconciliation is blind); warning when any CA is down."""
        if self.revoked is not None:
            return Health.UNHEALTHY
        if any(t.all_down for t in self.templates) or self.reconcile_blocked:
            return Health.UNHEALTHY
        if any(t.degraded for t in self.templates):
            return Health.WARNING
        return Health.HEALTHY

    @property
    def every_template_down(self) -> bool:
        return bool(self.templates) and all(t.all_down for t in self.templates)
