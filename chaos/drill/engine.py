"""Run scenarios against a lab: per round inject, measure, heal, settle, check.

    engine = DrillEngine(lab, history, observer, workload, db, settings)
    result = engine.run_scenario(SCENARIOS["connector-down"], rounds=20)

One round:

1. *steady*: a leader in ZooKeeper, the same connector active at the service,
   and a certificate accepted under its epoch since the last fault;
2. *inject*: the nemesis applies the fault (history: ``fault`` start) and the
   workload enrolls a burst of devices (requests that must survive the fault);
3. *recover*: wait until the scenario's recovery condition (new leader's
   first certificate, the other CA's first certificate, ...) or a deadline;
4. *heal*: roll the fault back (restart what was killed, SIGCONT, delete the
   drop rules) and wait until the lab is whole again;
5. *check*: stale epochs, single active connector, and per scenario kind
   "nobody acted while they could not".

At the end of a scenario the workload pauses, the backlog drains, and every
checker runs on the service DB, the CA certdbs and CRLs and the history.

The waits for a steady lab are :mod:`chaos.drill._steady_waits`, a round's
measurements :mod:`chaos.drill._round_measure`, the check of a stalled CA's
late certificates :mod:`chaos.drill._late_check`; the engine's settings, progress
and lab protocol :mod:`chaos.drill._engine_base` (all re-exported here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from chaos.checkers import (
    Snapshot,
    check_all,
    check_stale_epochs,
    count_duplicates,
    count_extras,
)
from chaos.checkers.epochs import check_single_active
from chaos.checkers.leadership import check_leader_changes, count_leader_changes
from chaos.checkers.ops import FAULT, NEMESIS
from chaos.checkers.requests import DELIVERED_STATES
from chaos.checkers.state import ServiceDb
from chaos.drill._engine_base import DrillLab, DrillSettings, LabWedgedError, Progress
from chaos.drill._late_check import LateCheck
from chaos.drill._round_measure import RoundMeasure
from chaos.drill._steady_waits import SteadyWaits
from chaos.drill.drain import drain, settle
from chaos.drill.observer import Observer
from chaos.drill.result import RoundResult, ScenarioResult
from chaos.drill.scenarios import HELD, Scenario
from chaos.history import History
from chaos.nemesis import FaultError
from chaos.workload import Workload
from connector.ca import CertDBUnavailableError

__all__ = ["DrillEngine", "DrillLab", "DrillSettings", "LabWedgedError", "Progress"]

log = logging.getLogger(__name__)


class DrillEngine(SteadyWaits, RoundMeasure, LateCheck):
    def __init__(
        self,
        lab: DrillLab,
        history: History,
        observer: Observer,
        workload: Workload,
        db: ServiceDb,
        settings: DrillSettings | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.lab = lab
        self.history = history
        self.observer = observer
        self.workload = workload
        self.db = db
        self.settings = settings or DrillSettings()
        self.progress = progress or Progress()
        self.sleep = sleep
        self._reported: set[str] = set()
        # (duplicates, orphans) the last scenario's checks left (already reported): the
        # next scenario's settle waits only for more than these.
        self._extras_left = (0, 0)
        self.wedged: str | None = None

    # -- scenario ------------------------------------------------------------------

    def run_scenario(self, scenario: Scenario, rounds: int) -> ScenarioResult:
        result = ScenarioResult(scenario.name)
        started_unix = time.time()
        stale_before = self.db.stale_rejections()
        duplicates_before = count_duplicates(self._attribution_snapshot())
        first_event = len(self.history.events)
        baseline_epoch = self.observer.leader.epoch
        self.workload.resume()
        for number in range(1, rounds + 1):
            self._phase(scenario.name, number, rounds, "steady")
            try:
                outcome = self.run_round(scenario, number)
            except LabWedgedError as exc:
                outcome = RoundResult(scenario.name, number, fault_at=self.history.now())
                repaired = self._repair(exc)
                if repaired:
                    outcome.violations.append(f"lab wedged ({exc}); {repaired}")
                else:
                    log.error("drill: %s round %s: %s; stopping", scenario.name, number, exc)
                    self.wedged = str(exc)
                    outcome.violations.append(f"lab wedged, drill stopped: {exc}")
            except (FaultError, RuntimeError) as exc:
                log.exception("drill: round %s of %s failed", number, scenario.name)
                outcome = RoundResult(scenario.name, number, fault_at=self.history.now())
                outcome.violations.append(f"round could not run: {exc}")
                self._heal_best_effort()
            result.rounds.append(outcome)
            with self.progress.lock:
                self.progress.last = outcome
            if self.wedged:
                break
        self._phase(scenario.name, rounds, rounds, "drain")
        if not self.workload.pause():
            log.warning("drill: %s: an enrollment or admin action did not land", scenario.name)
        self._drain()
        self._phase(scenario.name, rounds, rounds, "check")
        self._final_checks(result, started_unix, first_event)
        self._count_leader_changes(result, scenario, first_event, baseline_epoch)
        result.stale_epoch_rejected -= stale_before
        result.duplicates = max(0, result.duplicates - duplicates_before)
        with self.progress.lock:
            self.progress.results.append(result)
        return result

    def _phase(self, scenario: str, number: int, rounds: int, phase: str) -> None:
        with self.progress.lock:
            self.progress.scenario, self.progress.round = scenario, number
            self.progress.rounds, self.progress.phase = rounds, phase

    # -- one round -----------------------------------------------------------------

    def run_round(self, scenario: Scenario, number: int) -> RoundResult:
        s = self.settings
        self._wait_steady()
        notes: list[str] = []
        if not self._wait_placed():
            notes.append(
                f"the leader still shared a host with the ZooKeeper leader after "
                f"{s.settle_timeout:.0f}s (placement did not move it)"
            )
        if not self._wait_standbys_ready():
            notes.append(f"a standby's key pool was not full after {s.settle_timeout:.0f}s")
        if not self._wait_standbys_in_line():
            notes.append(
                f"a standby was still out of the election line after {s.settle_timeout:.0f}s"
            )
        if scenario.hits_primary_ca and not self._wait_on_primary():
            notes.append(
                f"the leader did not return to {self.lab.primary_ca} within "
                f"{s.settle_timeout:.0f}s; the fault hit an idle CA"
            )
        before = self.observer.leader
        leader = before.name
        if leader is None or before.epoch is None:
            raise RuntimeError("no leader before the fault")
        fault = scenario.build(self.lab, leader)
        self.workload.prepare(s.burst)
        self._phase(scenario.name, number, self.progress.rounds, "inject")
        injected_at = self.history.now()
        injected_unix = time.time()
        details = fault.inject()
        # A staged fault says when the fault measured struck (ca-stall-kill: the kill,
        # after the stall it waited on); otherwise it is inject's first act.
        struck_at = details.pop("struck_at", None)
        t0 = self.history.to_history_time(struck_at) if struck_at is not None else injected_at
        self.history.info(
            NEMESIS,
            FAULT,
            {"scenario": scenario.name, "round": number, "phase": "start", "fault": fault.name,
             "details": details, "leader": leader, "epoch": before.epoch},
        )  # fmt: skip
        burst = threading.Thread(target=self.workload.enroll_prepared, daemon=True)
        burst.start()
        outcome = RoundResult(
            scenario.name, number, fault_at=t0, old_leader=leader, old_epoch=before.epoch
        )
        outcome.notes += notes
        outcome.notes += [str(n) for n in details.get("notes") or []]
        attacks = details.get("attacks")
        if isinstance(attacks, dict):
            outcome.attacks = {str(k): str(v) for k, v in attacks.items()}
        healed_at: float | None = None
        try:
            if scenario.kind in HELD:
                self._phase(scenario.name, number, self.progress.rounds, "hold")
                self.sleep(scenario.hold_s)
                quiet_from = t0 + s.session_timeout + s.blocking_grace
                acted = [
                    r for r in self.observer.issued_after(quiet_from)
                    if self.observer.to_history_time(r.issued) < self.history.now()
                ]  # fmt: skip
                if scenario.name == "zk-quorum-loss" and acted:
                    outcome.violations.append(
                        f"{len(acted)} certificate(s) accepted while ZooKeeper had no quorum "
                        f"(first: request {acted[0].request}, epoch {acted[0].epoch})"
                    )
                healed_at = self._heal(fault, scenario, number)
            self._phase(scenario.name, number, self.progress.rounds, "recover")
            start = healed_at if healed_at is not None else t0
            recovered = self._wait_recovery(scenario, before.epoch, start)
            if scenario.kind == "ca-node":
                # Before the heal: the cluster's own election, however the work recovered.
                outcome.ca_elected_s = self._wait_ca_elected(t0)
        finally:
            if healed_at is None:
                healed_at = self._heal(fault, scenario, number)
        burst.join(timeout=10)
        self._measure(outcome, scenario, recovered, healed_at)
        self._phase(scenario.name, number, self.progress.rounds, "settle")
        self.lab.wait_whole(timeout=s.settle_timeout)
        self._wait_steady()
        if scenario.late_check:
            # The keys sent while the CA was stalled: it resumed by the heal at the latest.
            self._check_late(outcome, injected_unix, injected_unix + healed_at - injected_at)
        window = [e for e in self.history.snapshot() if e.time >= injected_at]
        outcome.violations += check_single_active(window)
        outcome.leader_changes = count_leader_changes(window, baseline_epoch=before.epoch)
        outcome.violations += check_leader_changes(
            outcome.leader_changes, limit=scenario.max_leader_changes, what=scenario.name
        )
        outcome.violations += self._new(check_stale_epochs(self.db.accepted_actions()))
        outcome.heal_at = healed_at
        return outcome

    def _heal(self, fault: object, scenario: Scenario, number: int) -> float:
        heal = getattr(fault, "heal")  # noqa: B009 - Fault protocol
        self._phase(scenario.name, number, self.progress.rounds, "heal")
        at = self.history.now()
        try:
            heal()
        finally:
            self.history.info(
                NEMESIS, FAULT, {"scenario": scenario.name, "round": number, "phase": "heal"}
            )
        return at

    def _repair(self, wedge: Exception) -> str | None:
        """What an operator would do: restart the leader that holds the lease but does not act.

        Returns what was done when the lab is steady again, None when it is not.
        """
        stuck = self.observer.leader.name
        if stuck is None:
            return None
        log.error("drill: %s; restarting %s to continue", wedge, stuck)
        stacks = self.lab.dump_stacks(stuck)
        if stacks is not None:
            log.error("drill: stacks of the stuck %s written to %s", stuck, stacks)
        self.history.info(
            NEMESIS, "repair", {"restart": stuck, "why": str(wedge), "stacks": str(stacks or "")}
        )
        try:
            self.lab.kill_connector(stuck)
            self.lab.start_connector(stuck)
            self.lab.wait_whole(timeout=self.settings.settle_timeout)
            self._wait_steady()
        except Exception as exc:
            log.error("drill: repair failed: %s", exc)
            return None
        where = f"; its thread stacks: {stacks}" if stacks else ""
        return f"the drill restarted {stuck} (held the lease without acting) and went on{where}"

    def _heal_best_effort(self) -> None:
        try:
            self.lab.wait_whole(timeout=self.settings.settle_timeout)
        except Exception:
            log.exception("drill: lab did not become whole again")

    # -- end of scenario -----------------------------------------------------------

    def _open_work(self) -> int:
        """Requests and revocations still open, and devices with something to collect."""
        requests, revocations = self.db.open_work()
        return requests + revocations + len(self.workload.pending_devices())

    def _drain(self) -> None:
        """Until no work is open, or none got done for the drain timeout
        (:mod:`chaos.drill.drain`)."""
        took = drain(
            self._open_work,
            timeout=self.settings.drain_timeout,
            clock=time.monotonic,
            sleep=self.sleep,
        )
        log.info("drill: drained for %.1f s", took)

    def _final_checks(self, result: ScenarioResult, started_unix: float, first_event: int) -> None:
        events = self.history.snapshot()[first_event:]
        try:
            snapshot, duplicates = self._settled_snapshot()
        except CertDBUnavailableError as exc:
            # The checks cannot run: say so as a violation (the drill is not ok) and
            # go on with the next scenario rather than stop the drill with a traceback.
            log.error("drill: final checks could not read the lab's state: %s", exc)
            result.violations.append(f"final checks could not run: {exc}")
            return
        created = set(self.db.created_since(started_unix))
        mine = [r for r in snapshot.requests if r.id in created]
        result.created = len(mine)
        result.delivered = sum(1 for r in mine if r.state in DELIVERED_STATES)
        result.failed = sum(1 for r in mine if r.state == "failed")
        result.duplicates = duplicates
        result.stale_epoch_rejected = self.db.stale_rejections()
        violations = self._new(check_all(events, snapshot))
        result.lost = sum(1 for v in violations if v.startswith("lost request"))
        result.violations += violations

    def _settled_snapshot(self) -> tuple[Snapshot, int]:
        """The lab's state once no extra certificate waits for its revocation, and its
        duplicates: one counts only if it outlives the drain timeout (drain.settle).
        A late orphan is revoked by whoever watched its key, leader or not, within a
        sweep or two of its CA answering."""

        def unsettled(state: Snapshot) -> bool:
            extras = count_extras(_certificates(state))
            return any(now > left for now, left in zip(extras, self._extras_left, strict=True))

        snapshot, waited = settle(
            self.lab.snapshot,
            unsettled,
            timeout=self.settings.drain_timeout,
            clock=time.monotonic,
            sleep=self.sleep,
        )
        if waited > 0:
            log.info("drill: waited %.1f s for late certificates to be revoked", waited)
        self._extras_left = count_extras(_certificates(snapshot))
        return snapshot, self._extras_left[0]

    def _count_leader_changes(
        self, result: ScenarioResult, scenario: Scenario, first_event: int, baseline: int | None
    ) -> None:
        """Leadership changes over the whole scenario; rounds already checked their own."""
        events = self.history.snapshot()[first_event:]
        result.leader_changes = count_leader_changes(events, baseline_epoch=baseline)
        if scenario.max_leader_changes == 0:
            between = result.leader_changes - sum(r.leader_changes for r in result.rounds)
            result.violations += check_leader_changes(
                between, limit=0, what=f"{scenario.name} (between rounds)"
            )

    def _attribution_snapshot(self) -> Snapshot:
        return _certificates(self.lab.snapshot())

    def _new(self, violations: list[str]) -> list[str]:
        """Violations not reported before (the state is cumulative across scenarios)."""
        fresh = [v for v in violations if v not in self._reported]
        self._reported.update(fresh)
        return fresh


def _certificates(full: Snapshot) -> Snapshot:
    """What the duplicate check reads of the lab's state."""
    return Snapshot(
        delivered=full.delivered, intents=full.intents, ca_certificates=full.ca_certificates
    )
