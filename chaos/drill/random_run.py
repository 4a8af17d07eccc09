"""Run a random nemesis schedule against a lab: overlapping faults, then every checker.

    plan = make_schedule(seed=7, duration_s=120, kinds=available_kinds(links=True,
                         partition=True), connectors=3)
    engine = RandomDrill(lab, history, observer, workload, db, settings, progress)
    result = engine.run_random(plan)      # ScenarioResult "random", one round per fault

Each planned fault runs in a thread of its own: it waits for its start,
injects, holds, heals, so faults overlap as the plan says. What the plan
cannot know is decided when a fault starts, under one lock: a connector
fault hits the leader the observer sees, or, when the leader is already
faulted, the first member that is not (none left: the fault is skipped and
said so). Every fault is a history ``fault`` event (scenario ``random``,
round = its number) with start and heal, so the timeline shades each window.

After the last heal every link goes back to its baseline, the lab must become
whole and steady again (a violation if not), the backlog drains and every
checker runs, as for any scenario. Minutes of overlapping faults leave a
backlog that a loaded machine clears in minutes too, so the drain lasts while
the open work keeps shrinking: a request is lost when nothing moved for the
drain timeout (45 s), not when the queue was long (capped at ten timeouts).
Failover is measured per fault where a recovery is defined
(:data:`chaos.drill.schedule.KINDS`); a fault that overlapped none and did not
recover within the recover timeout is a violation, one that overlapped others
only a note (another fault may hold the cluster back on purpose).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chaos.checkers import check_stale_epochs, count_duplicates
from chaos.checkers.epochs import check_single_active
from chaos.checkers.leadership import count_leader_changes
from chaos.checkers.ops import FAULT, NEMESIS
from chaos.checkers.state import ServiceDb
from chaos.drill.drain import drain
from chaos.drill.engine import DrillEngine, DrillLab, DrillSettings, LabWedgedError, Progress
from chaos.drill.observer import LeaderChange, Observer
from chaos.drill.result import RoundResult, ScenarioResult
from chaos.drill.scenarios import SCENARIOS
from chaos.drill.schedule import KINDS, FaultKind, Schedule, ScheduledFault
from chaos.history import History
from chaos.nemesis import Fault
from chaos.workload import Workload

__all__ = ["RANDOM", "Delivery", "Injected", "RandomDrill", "RandomLab", "measure_fault"]

log = logging.getLogger(__name__)

RANDOM = "random"

# Kinds made by an existing scenario's builder (the rest: below).
_BUILT_BY = {
    "kill": "connector-down", "sigterm": "graceful", "pause": "pause",
    "partition": "partition", "service-cut": "service-cut", "ca-cut": "ca-cut",
    "service-down": "service-down", "ca-down": "ca-down", "ca-all-down": "ca-all-down",
    "ca-stall": "ca-stall", "ca-node-loss": "ca-node-loss", "ca-node-stall": "ca-node-stall",
    "zk-node-loss": "zk-node-loss", "zk-quorum-loss": "zk-quorum-loss",
}  # fmt: skip

# How long a fault waits for its resources when an earlier heal runs late.
_RESOURCE_WAIT_S = 10.0


class RandomLab(DrillLab, Protocol):
    def link_slow(self, connector: str, targets: tuple[str, ...], rtt_s: float) -> Fault: ...
    def heal_links(self) -> None: ...


@dataclass
class Injected:
    """What became of one planned fault; times are history times."""

    planned: ScheduledFault
    target: str | None
    leader: str | None
    epoch: int | None
    at: float
    healed_at: float | None = None
    error: str | None = None
    heal_error: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A certificate the service accepted: when (history time), under which epoch, from which CA."""

    at: float
    epoch: int
    ca: str


def _overlapped(rec: Injected, others: Sequence[Injected], until: float) -> bool:
    for other in others:
        if other is rec or other.error is not None:
            continue
        end = other.healed_at if other.healed_at is not None else float("inf")
        if other.at < until and end > rec.at:
            return True
    return False


def measure_fault(
    rec: Injected,
    records: Sequence[Injected],
    deliveries: Sequence[Delivery],
    changes: Sequence[LeaderChange],
    *,
    secondary_ca: str,
    window_s: float,
) -> RoundResult:
    """One fault's round: its failover where a recovery is defined (see the module docstring)."""
    kind = KINDS[rec.planned.kind]
    what = f"{kind.name} {rec.target}" if rec.target else kind.name
    out = RoundResult(RANDOM, rec.planned.index, fault_at=rec.at, heal_at=rec.healed_at,
                      old_leader=rec.leader, old_epoch=rec.epoch, fault=what)  # fmt: skip
    if rec.error is not None:
        out.notes.append(f"{what}: not injected: {rec.error}")
        return out
    if rec.heal_error is not None:
        out.notes.append(f"{what}: heal failed: {rec.heal_error}")
    recovery = kind.recovery
    handover = recovery in ("new-epoch", "handover-or-heal")
    if handover and (rec.target != rec.leader or rec.epoch is None):
        out.notes.append(f"{what}: hit a member that did not lead (no failover to measure)")
        return out
    if recovery is None:
        return out
    start = rec.healed_at if recovery == "after-heal" else rec.at
    if start is None:
        return out
    old_epoch = rec.epoch or 0
    seen = max((d.epoch for d in deliveries if d.at < rec.at), default=0)
    if handover and seen > old_epoch:
        # The observer's ZooKeeper view lagged (it reconnects after a quorum loss):
        # the target may not have led; a newer epoch's certificate is no recovery.
        out.notes.append(
            f"{what}: the observer saw epoch {old_epoch} leading, but epoch {seen} had "
            "already issued (its view lagged; no failover to measure)"
        )
        return out

    healed_at = rec.healed_at

    def recovers(d: Delivery) -> bool:
        if recovery == "handover-or-heal":
            return d.epoch > old_epoch or (healed_at is not None and d.at >= healed_at)
        if recovery == "new-epoch":
            return d.epoch > old_epoch
        return d.ca == secondary_ca if recovery == "other-ca" else True

    found = next((d for d in deliveries if d.at >= start and recovers(d)), None)
    if found is None or found.at - start > window_s:
        message = f"{what}: no recovery within {window_s:g}s ({recovery})"
        alone = not _overlapped(rec, records, start + window_s)
        (out.violations if alone else out.notes).append(
            message if alone else message + " while other faults held"
        )
        return out
    out.failover_s = round(found.at - start, 4)
    out.first_delivery_s = round(found.at - rec.at, 4)
    out.new_epoch = found.epoch
    if recovery == "other-ca":
        out.other_ca_s = out.first_delivery_s
    if handover and found.epoch > old_epoch:
        change = next((c for c in changes if c.at >= rec.at and (c.epoch or 0) > old_epoch), None)
        if change is not None:
            out.new_leader, out.new_leader_s = change.name, round(change.at - rec.at, 4)
    elif handover and healed_at is not None:
        out.notes.append(
            f"{what}: the leader kept its lease and issued again "
            f"{found.at - healed_at:.3f}s after the heal"
        )
    return out


class RandomDrill(DrillEngine):
    lab: RandomLab

    def __init__(
        self,
        lab: RandomLab,
        history: History,
        observer: Observer,
        workload: Workload,
        db: ServiceDb,
        settings: DrillSettings | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(lab, history, observer, workload, db, settings, progress, sleep)
        self.clock = clock
        self._cond = threading.Condition()
        self._busy: set[str] = set()
        self._held: dict[str, int] = {}
        self._limits: dict[str, int] = {}
        self._injected = 0

    def run_random(self, plan: Schedule) -> ScenarioResult:
        result = ScenarioResult(RANDOM, seed=plan.seed, faults_planned=len(plan.faults))
        started_unix = time.time()
        stale_before = self.db.stale_rejections()
        duplicates_before = count_duplicates(self._attribution_snapshot())
        first_event = len(self.history.events)
        self._limits = dict(plan.limits)
        self.workload.resume()
        self._phase(RANDOM, 0, len(plan.faults), "steady")
        try:
            self._wait_steady()
        except LabWedgedError as exc:
            result.violations.append(f"not run: {exc}")
            return result
        baseline = self.observer.leader.epoch
        records: list[Injected] = []
        t_start = self.clock()
        self._phase(RANDOM, 0, len(plan.faults), "faults")
        threads = [
            threading.Thread(
                target=self._run_fault, args=(f, t_start, records), name=f"nemesis-{f.index}",
                daemon=True,
            )
            for f in plan.faults
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, t_start + plan.duration_s + 120 - self.clock()))
        if any(thread.is_alive() for thread in threads):
            result.violations.append("a fault did not heal within 120 s of the plan's end")
        self._phase(RANDOM, self._injected, len(plan.faults), "settle")
        try:
            self.lab.heal_links()  # every link at its baseline, whatever a heal left
            self.lab.wait_whole(timeout=self.settings.settle_timeout)
            self._wait_steady()
        except Exception as exc:
            log.error("drill: random: the lab did not recover after the last heal: %s", exc)
            result.violations.append(f"the cluster did not recover after every fault healed: {exc}")
        deliveries = [
            Delivery(self.observer.to_history_time(r.issued), r.epoch, r.ca)
            for r in list(self.observer.issued)
        ]
        for rec in sorted(records, key=lambda r: r.planned.index):
            result.rounds.append(
                measure_fault(rec, records, deliveries, list(self.observer.changes),
                              secondary_ca=self.lab.secondary_ca,
                              window_s=self.settings.recover_timeout)
            )  # fmt: skip
        result.faults_injected = sum(1 for r in records if r.error is None)
        window = self.history.snapshot()[first_event:]
        result.violations += check_single_active(window)
        result.violations += self._new(check_stale_epochs(self.db.accepted_actions()))
        self._phase(RANDOM, self._injected, len(plan.faults), "drain")
        if not self.workload.pause():
            log.warning("drill: random: an enrollment or admin action did not land")
        self._drain()
        self._phase(RANDOM, self._injected, len(plan.faults), "check")
        self._final_checks(result, started_unix, first_event)
        events = self.history.snapshot()[first_event:]
        result.leader_changes = count_leader_changes(events, baseline_epoch=baseline)
        result.stale_epoch_rejected -= stale_before
        result.duplicates = max(0, result.duplicates - duplicates_before)
        with self.progress.lock:
            self.progress.results.append(result)
        return result

    def _drain(self) -> None:
        """Until no work is open, or none got done for the drain timeout (see above)."""
        took = drain(
            self._open_work, timeout=self.settings.drain_timeout, clock=self.clock, sleep=self.sleep
        )
        log.info("drill: random: drained for %.1f s", took)

    # -- one fault -----------------------------------------------------------------

    def _free(self, kind: FaultKind) -> bool:
        return all(self._held.get(r, 0) < self._limits.get(r, 1) for r in kind.uses)

    def _pick(self, kind: FaultKind, leader: str | None) -> str | None:
        if not kind.targets_connector:
            return None
        if leader is not None and leader not in self._busy:
            return leader
        free = [n for n in sorted(self.lab.connector_names()) if n not in self._busy]
        return free[0] if free else None

    def _build(self, planned: ScheduledFault, target: str) -> Fault:
        if planned.kind == "latency":
            return self.lab.link_slow(target, ("service",), planned.rtt_s or 0.2)
        return SCENARIOS[_BUILT_BY[planned.kind]].build(self.lab, target)

    def _run_fault(self, planned: ScheduledFault, t_start: float, records: list[Injected]) -> None:
        self.sleep(max(0.0, t_start + planned.at_s - self.clock()))
        kind = KINDS[planned.kind]
        with self._cond:
            # An earlier heal may run late (a restart waits for the process to serve).
            self._cond.wait_for(lambda: self._free(kind), timeout=_RESOURCE_WAIT_S)
            leader = self.observer.leader
            target = self._pick(kind, leader.name)
            rec = Injected(planned, target, leader.name, leader.epoch, self.history.now())
            records.append(rec)
            if not self._free(kind):
                rec.error = f"{', '.join(kind.uses)} still faulted {_RESOURCE_WAIT_S:g}s on"
            elif kind.targets_connector and target is None:
                rec.error = "every connector already faulted"
            if rec.error is not None:
                self.history.info(NEMESIS, "fault-skipped", {"round": planned.index,
                                  "kind": planned.kind, "why": rec.error})  # fmt: skip
                return
            try:
                fault = self._build(planned, target or leader.name or "")
                rec.at = self.history.now()
                details: dict[str, Any] = fault.inject()
            except Exception as exc:
                log.warning("drill: random #%s %s: not injected: %s", planned.index, kind.name, exc)
                rec.error = f"{type(exc).__name__}: {exc}"
                self.history.info(NEMESIS, "fault-skipped", {"round": planned.index,
                                  "kind": planned.kind, "why": rec.error})  # fmt: skip
                return
            for resource in kind.uses:
                self._held[resource] = self._held.get(resource, 0) + 1
            if target is not None:
                self._busy.add(target)
            self._injected += 1
            self.history.info(
                NEMESIS,
                FAULT,
                {"scenario": RANDOM, "round": planned.index, "phase": "start", "kind": kind.name,
                 "fault": fault.name, "target": target, "details": details,
                 "leader": leader.name, "epoch": leader.epoch},
            )  # fmt: skip
        self._phase(RANDOM, self._injected, self.progress.rounds, "faults")
        self.sleep(max(0.0, t_start + planned.end_s - self.clock()))
        healed_at = self.history.now()
        try:
            fault.heal()
        except Exception as exc:
            log.error("drill: random #%s %s: heal failed: %s", planned.index, kind.name, exc)
            rec.heal_error = str(exc)
            self.history.info(NEMESIS, "heal-failed", {"round": planned.index, "why": str(exc)})
        finally:
            self.history.info(NEMESIS, FAULT, {"scenario": RANDOM, "round": planned.index,
                                               "phase": "heal", "kind": kind.name})  # fmt: skip
            with self._cond:
                rec.healed_at = healed_at
                for resource in kind.uses:
                    self._held[resource] -= 1
                self._busy.discard(target or "")
                self._cond.notify_all()
