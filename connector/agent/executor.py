"""The thin executor: carry out one :class:`Decision`, record what happened.

It holds no policy: what to do was decided by :func:`decide`; this module does
it, with a fresh epoch taken right before every side effect (through
:class:`~connector.agent.ports.Fence`), and writes the outcome into
:class:`AgentState`, which the next snapshot reads::

    executor = Executor(deps, state)
    executor.execute(decide(snapshot))

Failures become state, not exceptions: a 409 sets ``rejected_epoch`` (the next
decision steps down at once), an unreachable service sets a back-off, a lost
lease simply ends the action.

Its two background halves are helpers it holds: :class:`~connector.agent.batches.Batches`
(``executor.batches``) issues each polled request on a thread of its own, and
:class:`~connector.agent.revocations.Revocations` (``executor.revocations``) revokes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from connector.agent._ca_states import read_ca_states
from connector.agent.batches import Batches
from connector.agent.dangling import DanglingWork, settle
from connector.agent.decide import Action, Decision
from connector.agent.events import Event, emit
from connector.agent.hand import Hand
from connector.agent.late import LateReport, LateSweeps, LateWatch
from connector.agent.ports import Fence, LeaseLost
from connector.agent.reconcile import reconcile
from connector.agent.revocations import Revocations
from connector.agent.state import AgentState, ExecutorDeps
from connector.service_client import (
    BadRequest,
    ConnectorRevokedError,
    Intent,
    ServiceUnavailable,
    StaleEpochError,
)

__all__ = ["FIRST_BATCH", "AgentState", "Executor", "ExecutorDeps"]

# Requests a registration takes as its first batch, whatever loop.workers is: the
# batch's members meet at the intents call, and the first certificate waits for the
# slowest (keys made one per CPU at a time when the pool is empty).
FIRST_BATCH = 4
# After a refused hand-over: ask again this late (the budget's window slides slowly;
# another able standby may be there at the next look).
_BUDGET_RETRY_S = 30.0
_TARGET_RETRY_S = 1.0

# Actions whose success proves the service answered (a standby's heartbeat too).
_SERVICE_ACTIONS = frozenset(
    {
        Action.HEARTBEAT,
        Action.REGISTER,
        Action.RECONCILE,
        Action.REVOKE,
        Action.ISSUE,
    }
)

log = logging.getLogger("pfxha.connector.executor")

# The service answers 428 when an epoch was never registered (e.g. its DB was
# restored): register again rather than give up.
_NOT_REGISTERED = 428
# Actions that take no fresh epoch (they give leadership up).
_NO_FENCE = (Action.STOP, Action.STEP_DOWN, Action.LEAVE)


class Executor:
    def __init__(self, deps: ExecutorDeps, state: AgentState) -> None:
        self.deps = deps
        self.state = state
        self.fence = Fence(deps.lease)
        # Guards state.counts and the hand-over; the issuing threads (batches) take it too.
        self._counts_lock = threading.Lock()
        self.hand = Hand(
            workers=deps.workers, batch_size=deps.batch_size, max_in_hand=deps.max_in_hand
        )
        self.dangling = DanglingWork()
        # Keys given up on whose certificate may still arrive (connector/agent/late.py).
        self.late = LateWatch(deps.late_window_s, deps.clock)
        if deps.metrics is not None:
            deps.metrics.watch_late_keys(lambda: len(self.late))
        # Swept by the leader's reconciliation, and in the background once it stands by.
        self.late_sweeps = LateSweeps(
            self.late,
            deps.issuer,
            name=deps.name,
            deadline=deps.ca_deadline,
            is_retryable=deps.is_retryable,
            on_report=self._count_late,
        )
        # Called when a background worker finishes (the loop sets it to wake itself).
        self.on_progress: Callable[[], None] = lambda: None
        # Polled requests are issued on threads of their own (connector/agent/batches.py).
        self.batches = Batches(
            deps,
            state,
            self.fence,
            hand=self.hand,
            dangling=self.dangling,
            late=self.late,
            counts_lock=self._counts_lock,
            on_revoked=self._on_revoked,
            on_progress=lambda: self.on_progress(),
        )
        # Revocations run on a thread of their own: a CA that is down (or slow)
        # for a revocation must not hold up issuance at the other CAs.
        self.revocations = Revocations(
            deps,
            state,
            self.fence,
            on_revoked=self._on_revoked,
            on_progress=lambda: self.on_progress(),
        )
        # (epoch, intents) the registration listed, for that epoch's first sweep.
        self._listed_intents: tuple[int, list[Intent]] | None = None
        # (epoch, lease sequence) of the last answer that brought requests: the next
        # poll names it, so requests leased by an answer lost on the way (a link that
        # dropped it, a timeout) come back at once rather than when their lease expires.
        self._received: tuple[int, int] | None = None

    def close(self) -> None:
        self.revocations.close()
        self.batches.close()
        self.late_sweeps.close()

    def execute(self, decision: Decision) -> None:
        handler: Callable[[Decision], None] = {
            Action.STOP: self._stop,
            Action.STEP_DOWN: self._step_down,
            Action.LEAVE: self._leave,
            Action.WAIT: lambda _d: None,
            Action.HEARTBEAT: self._heartbeat,
            Action.REGISTER: self._register,
            Action.RECONCILE: self._reconcile,
            Action.REVOKE: self.revocations.poll,
            Action.ISSUE: self._issue,
            Action.YIELD: self._yield,
            Action.SWEEP_LATE: self._sweep_late,
        }[decision.action]
        if decision.epoch is not None and decision.action not in _NO_FENCE:
            self.fence.arm(decision.epoch)
        try:
            handler(decision)
            if decision.action in _SERVICE_ACTIONS:
                self.reached_service(True)
        except StaleEpochError as exc:
            self.state.rejected_epoch = decision.epoch if decision.epoch is not None else -1
            emit(
                log,
                Event.STALE_EPOCH,
                epoch=decision.epoch,
                reason=exc.reason,
                action=decision.action.value,
            )
        except LeaseLost as exc:
            emit(log, Event.LEASE_NOT_FRESH, action=decision.action.value, reason=str(exc))
        except ServiceUnavailable as exc:
            self.reached_service(False)
            self.state.service_retry_at = self.deps.clock() + self.deps.backoff_s
            emit(log, Event.SERVICE_UNAVAILABLE, action=decision.action.value, error=exc.reason)
        except ConnectorRevokedError as exc:
            self._on_revoked(decision.action.value, exc)
        except BadRequest as exc:
            if exc.status == _NOT_REGISTERED:
                self.state.registered_epoch = None
            else:
                self.state.service_retry_at = self.deps.clock() + self.deps.backoff_s
            log.error("service refused %s: %s", decision.action.value, exc.reason)
        except Exception:
            # A bug or an unexpected answer must not kill the connector (a crash
            # loop would churn leadership): log it, back off, decide again.
            log.exception("%s failed", decision.action.value)
            self.state.service_retry_at = self.deps.clock() + self.deps.backoff_s

    # -- leadership ------------------------------------------------------------

    def reached_service(self, ok: bool) -> None:
        self.deps.on_service_outcome(ok)

    def _stop(self, decision: Decision) -> None:
        self.deps.lease.release("shutdown")
        self.state.stopped = True
        emit(log, Event.RELEASED, reason="shutdown", epoch=decision.epoch)

    def _step_down(self, decision: Decision) -> None:
        self.deps.lease.release(decision.reason)
        self.state.rejected_epoch = None
        self.state.registered_epoch = None
        self.state.reconciled_epoch = None
        emit(log, Event.STEPPED_DOWN, epoch=decision.epoch, reason=decision.reason)

    def hand_over(self, decision: Decision) -> None:
        """Carry out a YIELD (also called by the agent's yield watch, off the loop)."""
        self._yield(decision)

    def _yield(self, decision: Decision) -> None:
        """Hand the lease to a standby that can do the work; no new work meanwhile."""
        assert decision.target is not None
        with self._counts_lock:
            if self.state.handing_over_to is not None:
                return  # the loop and the yield watch decided the same thing at once
            self.state.handing_over_to = decision.target
        done, why, budget_spent = self.deps.lease.hand_over(decision.target, decision.reason)
        now = self.deps.clock()
        what = decision.dependency or "-"
        if done:
            self.state.handing_over_at = now
            self.state.last_yield = (now, what)
            emit(log, Event.YIELDED, to=decision.target, reason=decision.reason)
            if self.deps.metrics is not None:
                self.deps.metrics.yielded(what)
        else:
            self.state.handing_over_to = None
            # A spent budget is a long wait; a target that just left the line is not.
            retry = _BUDGET_RETRY_S if budget_spent else _TARGET_RETRY_S
            self.state.yield_refused = (now + retry, why)
            emit(log, Event.YIELD_REFUSED, to=decision.target, reason=why)
            if budget_spent and self.deps.metrics is not None:
                self.deps.metrics.yield_refused()

    def _on_revoked(self, action: str, exc: ConnectorRevokedError) -> None:
        """Revoked by an admin: no more side effects; the next decision leaves the election."""
        if self.state.revoked is None:
            emit(log, Event.CONNECTOR_REVOKED, action=action, reason=exc.reason)
        self.state.revoked = exc.reason
        self.fence.trip()
        self.on_progress()

    def _leave(self, decision: Decision) -> None:
        self.deps.lease.leave(decision.reason)
        self.state.registered_epoch = None
        self.state.reconciled_epoch = None
        emit(log, Event.LEFT_ELECTION, epoch=decision.epoch, reason=decision.reason)

    def _register(self, decision: Decision) -> None:
        """Register the epoch; the same round trip lists the stale intents (for the first
        sweep) and polls a first batch, issued at once beside that sweep: it holds no
        request of an older intent (those are in flight, never polled) until the sweep
        hands them back. Over a WAN each call here is a round trip of the takeover.

        The first batch is at most :data:`FIRST_BATCH` requests: its members wait for
        each other at the intents call, so a small one delivers the first certificate
        sooner (with an empty key pool its keys are made one after another); the next
        poll, beside it, takes the rest. Its results are uploaded one by one."""
        epoch = self.fence.epoch()
        reply = self.deps.service.register(
            self.deps.name,
            epoch,
            max_items=min(self.issue_capacity, FIRST_BATCH),
            timeout=self.deps.loop_call_timeout_s,
            # Nothing received in this epoch yet (0): a first batch leased by an
            # earlier try whose answer was lost comes back with this one.
            received=self._received_in(epoch) or 0,
            superseded_within_s=self.deps.late_window_s,
        )
        self._listed_intents = (epoch, list(reply.intents))
        self._note_received(epoch, reply.lease_seq)
        # Keys watched lately, maybe by a process that is gone now: their late
        # certificates are ours to revoke (the watch outlives who kept it).
        self.late.inherit(reply.superseded, reply.uncertain)
        self.state.registered_epoch = epoch
        self.state.reconciled_epoch = None
        # The registration told the service we are alive and active; the health
        # report can wait one interval rather than delay the first issuance.
        self.state.last_heartbeat_at = self.deps.clock()
        self.state.service_retry_at = None
        took = None
        if self.state.elected_at is not None:
            took = self.deps.clock() - self.state.elected_at
            if self.deps.metrics is not None:
                self.deps.metrics.observe_takeover(took)
        emit(log, Event.REGISTERED, epoch=epoch, since_elected_s=took)
        self.batches.take(epoch, list(reply.requests), group_results=False)

    def _heartbeat(self, decision: Decision) -> None:
        epoch = self.fence.epoch() if decision.as_leader else 0
        health = decision.health
        self.deps.service.heartbeat(
            self.deps.name,
            epoch,
            health.value,
            dict(self.deps.details()),
            timeout=self.deps.loop_call_timeout_s,
        )
        self.state.last_heartbeat_at = self.deps.clock()
        self.state.service_retry_at = None
        if (
            not decision.as_leader
            and self.deps.warm_connections
            and self.deps.lease.fresh_epoch() is None
        ):
            # A takeover's first calls run side by side; their TLS is done beforehand.
            # Not once the lease is ours (elected during this heartbeat): the probes
            # would hold the warm connections while the registration needs one.
            self.deps.service.keep_warm(
                self.deps.warm_connections, timeout=self.deps.loop_call_timeout_s
            )
        if health is not self.state.reported_health:
            emit(log, Event.HEALTH_CHANGED, health=health.value, was=self.state.reported_health)
            self.state.reported_health = health

    # -- work ------------------------------------------------------------------

    @property
    def sweep_soon(self) -> bool:
        """Orphans, interrupted work or watched keys wait: the next sweep should not wait long."""
        return self.state.orphans_pending or len(self.dangling) > 0 or len(self.late) > 0

    def _reconcile(self, decision: Decision) -> None:
        assert decision.epoch is not None
        late = LateReport()
        # CAs a revocation failed at in this turn, starting with those the reach probes
        # find failing: the steps below defer their work for them without a call (a
        # hung CA answers each only at its deadline, and this turn holds the loop).
        down = {name for name in read_ca_states(self.deps) if self.deps.ca_failing(name)}
        if self.state.reconciled_epoch == decision.epoch:
            # Keys given up on earlier, first (those settled below were searched just
            # now); not in a takeover's first sweep: new work waits for that one. A
            # sweep begun while standing by may still run: the next one comes soon.
            late = self.late_sweeps.now(self.fence, down) or late
        left = settle(
            self.dangling.take(decision.epoch), self.batches.context(), watch=self.late, down=down
        )
        self.dangling.extend(left)
        listed, self._listed_intents = self._listed_intents, None
        report = reconcile(
            self.deps.service,
            self.deps.issuer,
            self.fence,
            name=self.deps.name,
            deadline=self.deps.ca_deadline,
            is_retryable=self.deps.is_retryable,
            intents=listed[1] if listed is not None and listed[0] == decision.epoch else None,
            down=down,
        )
        for request_id, public_key_pem, epoch in report.given_up:
            self.late.add(request_id, public_key_pem, epoch=epoch)
        self.state.orphans_pending = not report.complete or bool(late.deferred)
        self.state.intents_waiting = len(report.waiting)
        if self.deps.metrics is not None:
            self.deps.metrics.set_intents_unreconciled(len(report.waiting))
            self.deps.metrics.orphans_revoked_by("reconcile", len(report.orphans_revoked))
        self.state.reconciled_epoch = decision.epoch
        self.state.last_reconcile_at = self.deps.clock()
        with self._counts_lock:
            self.state.counts["orphans_revoked"] += len(report.orphans_revoked)
            self.state.counts["requeued"] += len(report.requeued)

    def _sweep_late(self, _decision: Decision) -> None:
        """A standby's sweep of the keys it watched while leading: off the loop."""
        self.late_sweeps.in_background()
        self.state.last_late_sweep_at = self.deps.clock()

    def _count_late(self, report: LateReport) -> None:
        with self._counts_lock:
            self.state.counts["late_orphans_revoked"] += len(report.revoked)
        if self.deps.metrics is not None:
            self.deps.metrics.orphans_revoked_by("late", len(report.revoked))
        if report.revoked:
            self.on_progress()

    @property
    def in_hand(self) -> int:
        """Requests polled and not finished."""
        return self.hand.in_hand

    @property
    def issue_capacity(self) -> int:
        """Requests this leader can take now: issuing runs in the background, pipelined.

        Up to two per worker wait for their key, so a worker never waits for the
        next poll; requests past their key wait on the network only and do not
        hold the next poll back (:func:`connector.agent.hand.poll_size`). The
        hand is refilled once half of the key stage is done, not after every
        request: each poll is a round trip and a write at the service.
        """
        return self.hand.capacity

    def _issue(self, decision: Decision) -> None:
        deps = self.deps
        capacity = self.issue_capacity
        if capacity <= 0:
            return
        asked_at = deps.clock()
        epoch = self.fence.epoch()
        polled = deps.service.poll_work(
            deps.name,
            epoch,
            capacity,
            deps.poll_wait_s,
            timeout=deps.loop_call_timeout_s,
            received=self._received_in(epoch),
        )
        self._note_received(epoch, polled.lease_seq)
        if polled.revocations_waiting == 0:
            self.revocations.none_waiting(asked_at)
        assert decision.epoch is not None
        self.batches.take(decision.epoch, polled.requests)

    def _received_in(self, epoch: int) -> int | None:
        """The lease sequence of the last answer of ``epoch`` that brought requests."""
        received = self._received
        return received[1] if received is not None and received[0] == epoch else None

    def _note_received(self, epoch: int, lease_seq: int | None) -> None:
        """An answer of ``epoch`` that leased requests arrived: later polls name it."""
        if lease_seq is not None:
            self._received = (epoch, lease_seq)
