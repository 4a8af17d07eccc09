"""The pure decision of one loop turn: a :class:`Snapshot` in, a :class:`Decision` out.

No I/O, no clock, no randomness: the loop passes ``now`` in the snapshot. The
order of the checks is the safety argument, so read it top to bottom::

    decision = decide(snapshot)
    decision.action   # Action.ISSUE
    decision.reason   # "leader epoch 7: take new work"

1. Shutting down beats everything (SIGTERM: release the lease at once).
   Next, a connector the service refused as revoked (403) leaves the election
   for good (hands the lease over if it holds it) and never acts again.
2. A 409 from the service means a newer leader exists: step down, do nothing else.
3. Without a fresh lease (standby, suspended, stopped, or a leader whose lease
   cannot be proven fresh) the agent causes no leader side effect; a standby
   only heartbeats as standby. A leader whose lease stays unproven past a
   limit hands it over.
4. A leader registers its epoch, then reconciles older epochs' intents, and
   only then polls for new work; revocations come before new issuance. (The
   registration's answer carries a first batch, issued beside the first sweep:
   a polled request is pending, so it has no intent left to reconcile.) An intent
   at a CA whose certdb cannot be searched stays in flight (never issued
   anew while an orphan may be valid); new requests, which have no earlier
   intent, are still taken, and the connector reports itself unhealthy.
5. When every CA of every template is down, requests stay queued at the service.
6. Work-aware leadership: a leader that has not reached the service, or any CA
   of a template, for ``yield_after_s`` hands the lease to a standby that
   freshly reports it can (no new work meanwhile), unless it took office less
   than ``min_in_office_s`` ago or the cluster's yield budget is spent. Down for
   everyone: no hand-over, the leader backs off and reports unhealthy.
7. A standby still watching keys it gave up on while it led sweeps them for
   late certificates (no lease needed: nobody can deliver one; see
   :mod:`connector.agent.late`), as often as a leader would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.agent.snapshot import Health, Snapshot, Standing

__all__ = ["Action", "Decision", "decide", "decide_yield"]

# Upper bound of one idle wait; role changes wake the loop earlier.
_MAX_WAIT_S = 1.0
# A leader whose lease is momentarily not fresh re-checks quickly.
_STALE_LEASE_WAIT_S = 0.05


class Action(StrEnum):
    STOP = "stop"
    STEP_DOWN = "step_down"
    LEAVE = "leave"
    WAIT = "wait"
    HEARTBEAT = "heartbeat"
    REGISTER = "register"
    RECONCILE = "reconcile"
    REVOKE = "revoke"
    ISSUE = "issue"
    YIELD = "yield"
    SWEEP_LATE = "sweep_late"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    # The epoch a leader action is meant for; the executor still re-checks
    # fresh_epoch() right before each side effect.
    epoch: int | None = None
    health: Health = Health.UNKNOWN
    # WAIT: the longest the loop may sleep before the next turn.
    wait_s: float = 0.0
    # HEARTBEAT: as the leader (with the epoch) or as a standby.
    as_leader: bool = False
    # YIELD: the standby the lease is handed to, and what this leader cannot reach.
    target: str | None = None
    dependency: str | None = None


def _due(last: float | None, interval: float, now: float) -> bool:
    return last is None or now - last >= interval


def _until(last: float | None, interval: float, now: float) -> float:
    return 0.0 if last is None else max(0.0, last + interval - now)


def _wait(reason: str, s: Snapshot, wait_s: float, epoch: int | None = None) -> Decision:
    wait = min(max(wait_s, 0.01), _MAX_WAIT_S)
    return Decision(Action.WAIT, reason, epoch=epoch, health=s.health, wait_s=wait)


def decide(s: Snapshot) -> Decision:
    """What this turn should do, and why."""
    health = s.health
    if s.stopping:
        return Decision(Action.STOP, "shutdown requested: release the lease and exit", s.epoch)
    if s.revoked is not None:
        if s.standing is Standing.STOPPED:
            return _wait(
                "revoked by an admin: out of the election, no side effects", s, _MAX_WAIT_S
            )
        return Decision(
            Action.LEAVE,
            f"the service refused this connector as revoked (403): leave the election "
            f"({s.revoked})",
            s.epoch,
            health,
        )
    if s.rejected_epoch is not None:
        return Decision(
            Action.STEP_DOWN,
            f"service refused epoch {s.rejected_epoch} (409): a newer leader exists",
            s.rejected_epoch,
        )
    if s.standing is Standing.SUSPENDED:
        return _wait("suspended: ZooKeeper connection lost, no side effects", s, _MAX_WAIT_S)
    if s.standing is Standing.LEADER and s.epoch is None:
        if s.lease_unfresh_s > s.lease_unfresh_limit_s:
            # A leader that cannot prove its lease for this long is useless and
            # blocks everyone else: hand the lease over (a new epoch follows).
            return Decision(
                Action.STEP_DOWN,
                f"leader without a fresh lease for {s.lease_unfresh_s:.1f}s: hand it over",
            )
        return _wait("leader without a fresh lease: no side effects", s, _STALE_LEASE_WAIT_S)
    if s.standing is not Standing.LEADER or s.epoch is None:
        return _decide_standby(s)

    epoch = s.epoch
    if s.handing_over_to is not None:
        return _wait(f"handing the lease over to {s.handing_over_to}", s, _MAX_WAIT_S, epoch)
    handover = decide_yield(s)
    if handover is not None:
        return handover
    if s.service_retry_at is not None and s.service_retry_at > s.now:
        return _wait("service unavailable: backing off", s, s.service_retry_at - s.now, epoch)
    if s.registered_epoch != epoch:
        return Decision(
            Action.REGISTER, f"leader epoch {epoch}: register with the service", epoch, health
        )
    blind = _blind(s)
    if s.reconciled_epoch != epoch:
        return Decision(
            Action.RECONCILE,
            f"leader epoch {epoch}: reconcile older epochs' intents before new work{blind}",
            epoch,
            health,
        )
    if _due(s.last_heartbeat_at, s.heartbeat_interval_s, s.now):
        return Decision(
            Action.HEARTBEAT, f"leader epoch {epoch}: heartbeat", epoch, health, as_leader=True
        )
    if s.revocations_backlog or _due(s.last_revocation_poll_at, s.revocation_interval_s, s.now):
        return Decision(
            Action.REVOKE, f"leader epoch {epoch}: process revocations first", epoch, health
        )
    if _due(s.last_reconcile_at, s.reconcile_interval_s, s.now):
        why = "intents wait for a certdb" if s.intents_waiting else "periodic intent sweep"
        return Decision(Action.RECONCILE, f"leader epoch {epoch}: {why}{blind}", epoch, health)
    next_due = min(
        _until(s.last_heartbeat_at, s.heartbeat_interval_s, s.now),
        _until(s.last_revocation_poll_at, s.revocation_interval_s, s.now),
    )
    if s.every_template_down:
        return _wait(
            "every CA unreachable: requests stay queued at the service", s, next_due, epoch
        )
    if s.ca_retry_at is not None and s.ca_retry_at > s.now:
        wait = min(next_due, s.ca_retry_at - s.now)
        return _wait("CAs failed the last batch: backing off", s, wait, epoch)
    if s.issue_capacity <= 0:
        return _wait("every issuing worker busy: wait for a free one", s, next_due, epoch)
    if s.intents_waiting:
        return Decision(
            Action.ISSUE,
            f"leader epoch {epoch}: take new work; {s.intents_waiting} older intent(s) "
            f"wait, not issued anew{blind}",
            epoch,
            health,
        )
    return Decision(Action.ISSUE, f"leader epoch {epoch}: take new work", epoch, health)


def decide_yield(s: Snapshot) -> Decision | None:
    """YIELD when this leader cannot do the work and a standby can; None: carry on.

    Part of :func:`decide`, and also asked on its own by the agent's yield watch:
    the loop can be held for seconds by the very calls that fail (a CA or certdb
    that swallows packets), exactly when handing over matters.
    """
    epoch = s.epoch
    if s.standing is not Standing.LEADER or epoch is None or s.handing_over_to is not None:
        return None
    for blocked in s.blocked:
        if blocked.for_s < s.yield_after_s or not blocked.able:
            continue  # a blip, or down for everyone: keep the lease and back off
        if s.in_office_s < s.min_in_office_s or s.yield_refused is not None:
            return None  # anti-flapping: too new in office, or the budget is spent
        to = blocked.able[0]
        return Decision(
            Action.YIELD,
            f"{blocked.what} unreachable for {blocked.for_s:.1f}s while {to} reaches it: "
            f"hand the lease to {to}",
            epoch,
            Health.UNHEALTHY,
            target=to,
            dependency=blocked.what,
        )
    return None


def _blind(s: Snapshot) -> str:
    if not s.reconcile_blocked:
        return ""
    return f" (certdb of {', '.join(s.reconcile_blocked)} not answering: their intents wait)"


def _decide_standby(s: Snapshot) -> Decision:
    if s.standing is Standing.STOPPED:
        return _wait("election stopped: not a candidate", s, _MAX_WAIT_S)
    # First: it needs the CAs only, not the service (a deposed leader is often cut
    # from the service), and it only starts a background sweep.
    if s.late_watched and _due(s.last_late_sweep_at, s.reconcile_interval_s, s.now):
        return Decision(
            Action.SWEEP_LATE,
            f"standby: {s.late_watched} key(s) given up on while leading may still "
            "get a late certificate: search and revoke",
            None,
            s.health,
        )
    next_late = (
        _until(s.last_late_sweep_at, s.reconcile_interval_s, s.now)
        if s.late_watched
        else _MAX_WAIT_S
    )
    if s.service_retry_at is not None and s.service_retry_at > s.now:
        wait = min(s.service_retry_at - s.now, next_late)
        return _wait("service unavailable: backing off", s, wait)
    if _due(s.last_heartbeat_at, s.heartbeat_interval_s, s.now):
        return Decision(Action.HEARTBEAT, "standby: heartbeat as standby", None, s.health)
    next_due = min(_until(s.last_heartbeat_at, s.heartbeat_interval_s, s.now), next_late)
    return _wait("standby: waiting for leadership", s, next_due)
