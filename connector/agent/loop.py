"""The steady loop: snapshot -> decide -> execute, and the wiring of a real connector.

    agent = build_agent(load_config("connector.toml"))
    agent.run()             # until SIGTERM/SIGINT: releases the lease at once, then exits

Each turn reads an immutable :class:`Snapshot` (role and fresh epoch from the
elector, breaker states from the CA router, the agent's own bookkeeping),
asks the pure :func:`decide` what to do, and lets the thin :class:`Executor`
do it. Election callbacks arrive on a background thread; they only record
the news and wake the loop, so a demotion interrupts an idle wait at once,
and the fence stops a busy batch before its next side effect.

Work-aware leadership's bookkeeping (the others' reach, staying out of the
line, publishing ours) is :mod:`connector.agent._work_aware`; reading the CA
router's states, :mod:`connector.agent._ca_states`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connector.agent._ca_states import ca_state_word, read_ca_states, read_reconcile_states
from connector.agent._work_aware import WorkAwareLeadership
from connector.agent.decide import Action, Decision, decide, decide_yield
from connector.agent.events import Event, emit
from connector.agent.executor import Executor
from connector.agent.reach import Reach
from connector.agent.snapshot import (
    CAView,
    Snapshot,
    Standing,
    TemplateView,
    standing_from_role,
)
from connector.agent.state import AgentState, ExecutorDeps
from connector.ca import ReconcileState
from connector.config import LoopSettings
from connector.health import HealthSnapshot
from election import ElectionObserver

__all__ = ["Agent", "ca_state_word"]

log = logging.getLogger("pfxha.connector.agent")

# A hand-over the election has not carried out after this long is given up.
_HANDOVER_PATIENCE_S = 10.0
# How often the yield watch looks (a pure decision on what is in memory; the
# others' reports are read from ZooKeeper at most twice a refresh): a hand-over
# starts within this much of being due.
_YIELD_WATCH_S = 0.1


class Agent(ElectionObserver):
    """One connector: an election observer and the loop that acts on its role."""

    def __init__(
        self,
        *,
        deps: ExecutorDeps,
        elector: Any,
        templates: Mapping[str, Sequence[str]],
        loop: LoopSettings,
        clock: Callable[[], float] = time.monotonic,
        reach: Reach | None = None,
    ) -> None:
        self.name = deps.name
        self.deps = deps
        self.elector = elector
        self.templates = {t: tuple(cas) for t, cas in templates.items()}
        self.loop = loop
        self.clock = clock
        self.state = AgentState()
        self.executor = Executor(deps, self.state)
        self._wake = threading.Event()
        self.executor.on_progress = self._wake.set
        self._stopping = threading.Event()
        self.last_turn = clock()
        self.last_decision: Decision | None = None
        self._all_down = False
        self._unfresh_since: float | None = None
        # Twice the session timeout: well past any heartbeat gap of a healthy lease.
        self.lease_unfresh_limit_s = 2 * deps.lease_budget_s
        self.turns = 0
        # Work-aware leadership: what we reach (probes + real work), what the
        # others say they reach (read only while something of ours fails).
        self.reach = reach or Reach(clock, stale_s=2 * loop.probe_interval_s + loop.probe_timeout_s)
        self._leadership = WorkAwareLeadership(
            name=self.name,
            elector=lambda: self.elector,  # wired after the agent is built
            templates=self.templates,
            loop=loop,
            clock=clock,
            state=self.state,
            reach=self.reach,
        )
        self.peers = self._leadership.peers

    # -- election observer (called from the elector's thread) ----------------

    def on_elected(self, epoch: int) -> None:
        self.state.elected_at = self.clock()
        emit(log, Event.ELECTED, name=self.name, epoch=epoch)
        if self.deps.metrics is not None:
            self.deps.metrics.set_epoch(epoch)
        self._wake.set()

    def on_demoted(self, reason: str) -> None:
        emit(log, Event.DEMOTED, name=self.name, reason=reason)
        self.state.handing_over_to = None
        self._wake.set()

    def on_role_change(self, old: Any, new: Any, reason: str) -> None:
        emit(log, Event.ROLE_CHANGED, name=self.name, old=str(old), new=str(new), reason=reason)
        metrics = self.deps.metrics
        if metrics is not None:
            role = standing_from_role(new).value
            metrics.set_role(role, reason=reason.split(":", 1)[0].split(" ", 1)[0][:40] or "-")
            connected = role in ("leader", "standby")
            metrics.set_session_state("connected" if connected else "suspended")
        self._wake.set()

    def on_coordination_problem(self, kind: str, detail: str) -> None:
        # The elector logs it (5116, 5117, 5031); here it becomes a metric and an alert.
        if self.deps.metrics is not None:
            self.deps.metrics.coordination_problem(kind)

    def on_fast_path_change(self, state: Any, reason: str) -> None:
        # The elector logs the change (event 5027); here it only becomes a metric.
        if self.deps.metrics is not None:
            self.deps.metrics.set_fast_path(str(getattr(state, "value", state)))

    def on_placement(self, event: str, detail: str) -> None:
        # The placement watch logs it (5060-5063); here it becomes metrics and an event.
        metrics = self.deps.metrics
        if event == "seat":
            if metrics is not None:
                metrics.set_zk_seat(detail)
            return
        emit(log, Event.PLACEMENT, name=self.name, move=event, detail=detail)
        if metrics is not None:
            metrics.placement_moved(event)

    # -- control --------------------------------------------------------------

    def request_stop(self) -> None:
        """Release the lease at once and make the loop return (signal-handler safe).

        The release runs on its own thread: the loop may be inside a long-poll,
        and a successor should not wait for it. Work in hand is then fenced.
        """
        self._stopping.set()
        self._wake.set()
        threading.Thread(
            target=self.deps.lease.release, args=("shutdown",), name="pfxha-release", daemon=True
        ).start()

    def wake(self) -> None:
        """Cut the current idle wait short (news from another thread)."""
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self.state.stopped

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    # -- the loop -------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        role = getattr(self.elector, "role", None)
        standing = standing_from_role(role)
        epoch = self.elector.fresh_epoch() if standing is Standing.LEADER else None
        states = self._ca_states()
        views = tuple(
            TemplateView(t, tuple(CAView(ca, states.get(ca, "closed")) for ca in cas))
            for t, cas in self.templates.items()
        )
        now = self.clock()
        if standing is Standing.LEADER and epoch is None:
            if self._unfresh_since is None:
                self._unfresh_since = now
        else:
            self._unfresh_since = None
        blocked = tuple(name for name, state in self._reconcile_states().items() if not state.ready)
        unreachable = self._leadership.unreachable()
        self._leadership.withhold(standing, unreachable, now)
        s = self.state
        refused = s.yield_refused
        if refused is not None and now >= refused[0]:
            refused = s.yield_refused = None
        if (
            s.handing_over_to is not None
            and s.handing_over_at is not None
            and now - s.handing_over_at > _HANDOVER_PATIENCE_S
        ):
            # The switchover never happened (the target left, ZooKeeper was busy):
            # take work again and decide afresh.
            s.handing_over_to = s.handing_over_at = None
        return Snapshot(
            now=now,
            standing=standing,
            epoch=epoch,
            stopping=self._stopping.is_set(),
            revoked=s.revoked,
            rejected_epoch=s.rejected_epoch,
            registered_epoch=s.registered_epoch,
            reconciled_epoch=s.reconciled_epoch,
            templates=views,
            last_heartbeat_at=s.last_heartbeat_at,
            heartbeat_interval_s=self.loop.heartbeat_interval_s,
            last_revocation_poll_at=s.last_revocation_poll_at,
            revocation_interval_s=self.loop.revocation_interval_s,
            revocations_backlog=s.revocations_backlog,
            last_reconcile_at=s.last_reconcile_at,
            # Orphans awaiting a CA that was down, interrupted work, or intents
            # that waited for a certdb now answering again: sweep as often as
            # revocations are polled. While a certdb is known not to answer,
            # sweeping often would only pay its connect timeout again.
            reconcile_interval_s=(
                self.loop.revocation_interval_s
                if (self.executor.sweep_soon or s.intents_waiting) and not blocked
                else self.loop.reconcile_interval_s
            ),
            late_watched=len(self.executor.late),
            last_late_sweep_at=s.last_late_sweep_at,
            service_retry_at=s.service_retry_at,
            ca_retry_at=s.ca_retry_at,
            issue_capacity=self.executor.issue_capacity,
            lease_unfresh_s=0.0 if self._unfresh_since is None else now - self._unfresh_since,
            lease_unfresh_limit_s=self.lease_unfresh_limit_s,
            reconcile_blocked=blocked,
            intents_waiting=s.intents_waiting,
            blocked=unreachable,
            in_office_s=0.0 if s.elected_at is None else now - s.elected_at,
            yield_after_s=self.loop.yield_after_s or float("inf"),
            min_in_office_s=self.loop.min_in_office_s,
            handing_over_to=s.handing_over_to,
            yield_refused=refused[1] if refused is not None else None,
        )

    # -- work-aware leadership --------------------------------------------------

    def yield_watch_once(self) -> Decision | None:
        """Off the loop: does the leader have to hand over now? Then do it.

        Builds only what :func:`decide_yield` reads; the loop's own snapshot may be
        seconds away when a CA or certdb call holds it.
        """
        if standing_from_role(getattr(self.elector, "role", None)) is not Standing.LEADER:
            return None
        if not self.reach.any_failing():
            # Nothing of ours fails, so nothing is blocked and decide_yield keeps the
            # lease: no snapshot to build on the watch's ten looks a second (the
            # watch's thread went from 2.2 to 1.1 ms of CPU a second on a saturated
            # flow-bench leader; the wakes themselves are the rest).
            return None
        epoch = self.elector.fresh_epoch()
        if epoch is None:
            return None
        now = self.clock()
        s = self.state
        refused = s.yield_refused
        snapshot = Snapshot(
            now=now,
            standing=Standing.LEADER,
            epoch=epoch,
            blocked=self._leadership.unreachable(),
            in_office_s=0.0 if s.elected_at is None else now - s.elected_at,
            yield_after_s=self.loop.yield_after_s or float("inf"),
            min_in_office_s=self.loop.min_in_office_s,
            handing_over_to=s.handing_over_to,
            yield_refused=refused[1] if refused is not None and now < refused[0] else None,
        )
        decision = decide_yield(snapshot)
        if decision is not None:
            before = s.last_yield
            self.executor.hand_over(decision)
            self._after_yield(before)
            self._wake.set()
        return decision

    def _after_yield(self, before: tuple[float, str] | None) -> None:
        """Once a hand-over went out: hold down and say why, at once, not at the loop's
        next turn.

        The elector rejoins the line a few milliseconds after it releases, and the
        loop may sit in a service call for seconds meanwhile; a successor that read
        our member node then saw us in line, still reporting the service reachable,
        and handed the lease straight back (drill cascade, 9 rounds of 20 with three
        leadership changes instead of two).
        """
        if self.state.last_yield is None or self.state.last_yield is before:
            return  # refused, or the other path already yielded
        self._leadership.withhold(Standing.STANDBY, (), self.clock())
        self.publish_reach()

    def _yield_watch(self) -> None:
        interval = min(self.loop.probe_interval_s, _YIELD_WATCH_S)
        while not self.state.stopped and not self._stopping.is_set():
            try:
                self.yield_watch_once()
            except Exception:  # the watch must never die; the loop decides the same way
                log.exception("yield watch failed")
            self._stopping.wait(interval)

    def publish_reach(self) -> None:
        """Our reachability into our member node (the elector writes only on change/refresh)."""
        self._leadership.publish()

    def reach_changed(self) -> None:
        """A probe's verdict changed (the prober's thread): say so in our member node now,
        then wake the loop.

        The loop publishes after every turn, but a turn can be held by the very call
        that fails: a standby's heartbeat into a blackholed service waits for its
        timeout while its probe failed up to half a second earlier, and meanwhile
        the leader, cut off too, reads the standby's last "ok" and hands it the
        lease (seen once, in a service-down round of a two-round drill of every
        scenario).
        """
        self.publish_reach()
        self._wake.set()

    def _reconcile_states(self) -> dict[str, ReconcileState]:
        """Per CA, can reconciliation search it (the router's record: no I/O here)."""
        return read_reconcile_states(self.deps)

    def _ca_states(self) -> dict[str, str]:
        return read_ca_states(self.deps)

    def run_once(self) -> Decision:
        """One turn: snapshot, decide, execute. Returns the decision (for tests and logs)."""
        snap = self.snapshot()
        decision = decide(snap)
        previous = self.last_decision
        if previous is None or (previous.action, previous.reason) != (
            decision.action,
            decision.reason,
        ):
            log.debug("decision %s: %s", decision.action.value, decision.reason)
        self.last_decision = decision
        if snap.every_template_down and not self._all_down:
            emit(log, Event.CA_ALL_DOWN, epoch=snap.epoch, standing=snap.standing.value)
        self._all_down = snap.every_template_down
        before = self.state.last_yield
        self.executor.execute(decision)
        self._after_yield(before)
        self.publish_reach()
        self.last_turn = self.clock()
        self.turns += 1
        return decision

    def run(self) -> None:
        """Turn until stopped; waits are cut short by election news and stop requests."""
        emit(log, Event.AGENT_STARTED, name=self.name)
        if self.loop.yield_after_s:
            threading.Thread(
                target=self._yield_watch, name="pfxha-yield-watch", daemon=True
            ).start()
        try:
            while not self.state.stopped:
                decision = self.run_once()
                if decision.action is Action.WAIT:
                    self._wake.wait(decision.wait_s)
                    self._wake.clear()
        finally:
            self.executor.close()
            emit(log, Event.AGENT_STOPPED, name=self.name, counts=dict(self.state.counts))

    # -- health ---------------------------------------------------------------

    def health_snapshot(self) -> HealthSnapshot:
        role = standing_from_role(getattr(self.elector, "role", None))
        epoch = self.elector.fresh_epoch() if role is Standing.LEADER else None
        states = self._ca_states()
        decision = self.last_decision
        return HealthSnapshot(
            role=role.value,
            last_loop_turn=self.last_turn,
            session_connected=role in (Standing.LEADER, Standing.STANDBY),
            lease_fresh=epoch is not None,
            cas_reachable=sum(1 for word in states.values() if word != "open"),
            epoch=epoch or self.state.registered_epoch or 0,
            reconcile_problems=tuple(
                f"{name}: {state.detail}"
                for name, state in self._reconcile_states().items()
                if not state.ready
            ),
            detail={
                "decision": decision.action.value if decision else None,
                "reason": decision.reason if decision else None,
                "health": decision.health.value if decision else None,
                "counts": dict(self.state.counts),
                "intents_waiting": self.state.intents_waiting,
            },
        )
