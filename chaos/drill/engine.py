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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaos.checkers import (
    Snapshot,
    check_all,
    check_stale_epochs,
    count_duplicates,
)
from chaos.checkers.epochs import check_single_active
from chaos.checkers.leadership import check_leader_changes, count_leader_changes
from chaos.checkers.ops import CONNECTORS, FAULT, NEMESIS, OBSERVER
from chaos.checkers.requests import DELIVERED_STATES
from chaos.checkers.state import IssuedRow, ServiceDb
from chaos.drill.drain import drain
from chaos.drill.observer import LeaderChange, Observer
from chaos.drill.result import RoundResult, ScenarioResult
from chaos.drill.scenarios import HELD, FaultTarget, Scenario
from chaos.history import History
from chaos.launch import LaunchError
from chaos.nemesis import FaultError
from chaos.workload import Workload
from connector.ca import CertDBUnavailableError
from connector.ca._openbao import DEFAULT_PATIENCE_S

__all__ = ["DrillEngine", "DrillLab", "DrillSettings", "LabWedgedError", "Progress"]

log = logging.getLogger(__name__)


class LabWedgedError(RuntimeError):
    """The lab never came back to a steady state: later rounds would measure nothing."""


class DrillLab(FaultTarget, Protocol):
    """The lab as the engine uses it."""

    def connector_members(self) -> list[str]: ...
    def snapshot(self) -> Snapshot: ...
    def wait_whole(self, timeout: float) -> None: ...
    def placed(self, connector: str) -> bool: ...
    def key_pools_full(self, connectors: list[str]) -> bool: ...
    def dump_stacks(self, name: str) -> Path | None: ...


@dataclass
class DrillSettings:
    session_timeout: float = 1.0
    recover_timeout: float = 20.0
    settle_timeout: float = 30.0
    drain_timeout: float = 45.0
    burst: int = 2
    # After a blocking fault, leaders may still finish what they started within
    # this grace (the leader suspends at once; in-flight calls complete).
    blocking_grace: float = 0.5
    # ca-node-loss: the connectors' failover_patience_s for an electing CA cluster;
    # a certificate from the other CA sooner than this after the fault is a violation.
    ca_patience_s: float = DEFAULT_PATIENCE_S


@dataclass
class Progress:
    """What the live view shows; updated by the engine as it goes."""

    scenario: str = ""
    round: int = 0
    rounds: int = 0
    phase: str = ""
    last: RoundResult | None = None
    results: list[ScenarioResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DrillEngine:
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
        if scenario.kind in ("ca", "ca-node") and not self._wait_on_primary():
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
        t0 = self.history.now()
        details = fault.inject()
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
        window = [e for e in self.history.snapshot() if e.time >= t0]
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

    def _recovered(self, scenario: Scenario, old_epoch: int, start: float) -> IssuedRow | None:
        if scenario.kind == "cascade":
            # The first successor is cut too: recovery is a third leadership's work.
            second = self._first_change(start, old_epoch)
            if second is None:
                return None
            old_epoch = second.epoch or old_epoch
        for row in self.observer.issued_after(start):
            if scenario.kind in ("leader", "cascade") and row.epoch > old_epoch:
                return row
            if scenario.kind == "ca" and row.ca == self.lab.secondary_ca:
                return row
            if scenario.kind in ("zk", *HELD) and row.epoch >= old_epoch:
                return row
            # ca-node: signed after the fault for sure (its request came after it).
            if scenario.kind == "ca-node" and self.observer.to_history_time(row.created) >= start:
                return row
        return None

    def _wait_recovery(self, scenario: Scenario, old_epoch: int, start: float) -> IssuedRow | None:
        found: list[IssuedRow] = []

        def done() -> bool:
            row = self._recovered(scenario, old_epoch, start)
            if row is not None:
                found.append(row)
            return row is not None

        self.observer.wait(done, timeout=self._recover_window(scenario))
        return found[0] if found else None

    def _wait_ca_elected(self, t0: float, poll_s: float = 0.05) -> float | None:
        """Seconds from ``t0`` until the primary CA's cluster has an active node again.

        Polled from the work's recovery on: exact to a poll when the work recovered
        first (through the next CA), an upper bound when the election came first.
        """
        deadline = self.history.now() + self.settings.recover_timeout
        while self.history.now() < deadline:
            try:
                self.lab.ca_active_node(self.lab.primary_ca)
            except LaunchError:
                self.sleep(poll_s)
                continue
            return round(self.history.now() - t0, 4)
        return None

    def _recover_window(self, scenario: Scenario) -> float:
        return scenario.recover_s or self.settings.recover_timeout

    def _first_change(self, at: float, old_epoch: int) -> LeaderChange | None:
        """The first leadership the observer saw from ``at`` with an epoch above ``old_epoch``."""
        later = (c for c in self.observer.changes if c.at >= at and c.name)
        return next((c for c in later if (c.epoch or 0) > old_epoch), None)

    def _measure(
        self,
        outcome: RoundResult,
        scenario: Scenario,
        recovered: IssuedRow | None,
        healed_at: float,
    ) -> None:
        t0 = outcome.fault_at
        old_epoch = outcome.old_epoch or 0
        window = self._recover_window(scenario)

        def first_change() -> LeaderChange | None:
            return self._first_change(t0, old_epoch)

        change = first_change()
        if change is None and recovered is not None and recovered.epoch > old_epoch:
            # The service already accepted work under a newer epoch, so ZooKeeper has
            # a new leader; the observer's own ZooKeeper server may have been on the
            # crashed host and it is still catching up. Its record carries ZooKeeper's
            # mtime, so waiting for it does not change what is measured.
            self.observer.wait(lambda: first_change() is not None, timeout=10.0)
            change = first_change()
        if scenario.kind == "cascade" and change is not None and recovered is not None:
            # Report the leader that recovered, not the successor that was cut in turn.
            last = self._first_change(t0, recovered.epoch - 1)
            change = last if last is not None and last.epoch == recovered.epoch else change
        if change is not None:
            outcome.new_leader, outcome.new_epoch = change.name, change.epoch
            outcome.new_leader_s = round(change.at - t0, 4)
            registered = self.db.registrations().get(change.name or "")
            if registered and registered[0] >= (change.epoch or 0) and registered[1]:
                outcome.registered_s = round(self.observer.to_history_time(registered[1]) - t0, 4)
        elif scenario.leader_change:
            outcome.violations.append(f"no new leader within {window:g}s of the fault")
        if recovered is None:
            wanted = {"leader": "new epoch", "cascade": "third leader's"}.get(
                scenario.kind, scenario.kind
            )
            outcome.violations.append(f"no recovery within {window:g}s ({wanted} certificate)")
        else:
            at = self.observer.to_history_time(recovered.issued)
            start = healed_at if scenario.kind in HELD else t0
            outcome.first_delivery_s = round(at - t0, 4)
            if scenario.kind == "ca" or (
                scenario.kind == "ca-node" and recovered.ca != self.lab.primary_ca
            ):
                outcome.other_ca_s = round(at - t0, 4)
            if scenario.kind == "ca-node":
                outcome.violations += self._early_failover(t0)
            outcome.failover_s = round(at - start, 4)
            if outcome.new_epoch is None:
                outcome.new_epoch = recovered.epoch
            window_end = at
            late = [
                r for r in self.observer.issued_after(t0)
                if self.observer.to_history_time(r.created) <= window_end
            ]  # fmt: skip
            outcome.delayed_requests = len(late)
            if late:
                outcome.worst_latency_s = round(max(r.issued - r.created for r in late), 4)

    def _early_failover(self, t0: float) -> list[str]:
        """ca-node: certificates from another CA before the patience ran out."""
        until = t0 + self.settings.ca_patience_s
        early = [
            r for r in self.observer.issued_after(t0)
            if r.ca != self.lab.primary_ca and self.observer.to_history_time(r.issued) < until
        ]  # fmt: skip
        if not early:
            return []
        return [
            f"{len(early)} certificate(s) from {early[0].ca} within the "
            f"{self.settings.ca_patience_s:g}s patience: failed over instead of waiting for "
            f"{self.lab.primary_ca}'s cluster to elect (first: request {early[0].request})"
        ]

    # -- steady state --------------------------------------------------------------

    def _steady(self) -> bool:
        leader = self.observer.leader
        if leader.name is None or leader.epoch is None:
            return False
        if self.observer.active != [leader.name]:
            return False
        return any(r.epoch == leader.epoch for r in self.observer.issued[-50:])

    def _wait_placed(self) -> bool:
        """Until the leader is where placement wants it (hosts: off the ZooKeeper leader's host).

        A leader that placement is about to move would hand over by itself a moment
        into the round: a hosts drill's fault once hit the old leader 0.17 s after
        such a move and measured the successor's own deliveries as a 0.09 s failover.
        """

        def placed() -> bool:
            leader = self.observer.leader.name
            return leader is not None and self.lab.placed(leader) and self._steady()

        return self._poll_settle(placed)

    def _wait_standbys_ready(self) -> bool:
        """Until every standby's key pool is full: a round's fault hits a steady cluster.

        A standby restarted by the round before (connector-down kills and restarts)
        filled its pool for about a second; one that took over half a second after its
        restart made the first batch's keys on demand (hosts drill, connector-down: 0.33 s
        from the first batch to its intents against 0.06 s with a full pool).
        """

        def ready() -> bool:
            leader = self.observer.leader.name
            standbys = [m for m in self.lab.connector_members() if m != leader]
            return self.lab.key_pools_full(standbys)

        return self._poll_settle(ready)

    def _poll_settle(self, check: Callable[[], bool], every_s: float = 0.2) -> bool:
        """Whether ``check()`` came true within the settle timeout (asked every ``every_s``)."""
        deadline = time.monotonic() + self.settings.settle_timeout
        while time.monotonic() < deadline:
            if check():
                return True
            self.sleep(every_s)
        return False

    def _wait_on_primary(self) -> bool:
        """Until the leader issues from the primary CA again (its breaker closed after a heal).

        A CA fault only measures failover when it hits the CA in use.
        """
        primary = self.lab.primary_ca

        def on_primary() -> bool:
            return bool(self.observer.issued) and self.observer.issued[-1].ca == primary

        deadline = time.monotonic() + self.settings.settle_timeout
        while time.monotonic() < deadline:
            if self.observer.wait(on_primary, timeout=0.5):
                return True
            self.workload.enroll_now(1)  # work to show which CA is in use
        return False

    def _wait_steady(self) -> None:
        # A steady system keeps delivering; enroll one device so there is work to see.
        if not self._steady():
            self.workload.enroll_now(1)
        if not self.observer.wait(self._steady, timeout=self.settings.settle_timeout):
            leader = self.observer.leader
            raise LabWedgedError(
                f"the lab did not reach a steady state within {self.settings.settle_timeout:.0f}s "
                f"(ZooKeeper leader {leader.name} epoch {leader.epoch}, service active "
                f"{self.observer.active})"
            )
        leader = self.observer.leader
        self.history.info(
            OBSERVER,
            CONNECTORS,
            {"active": list(self.observer.active), "epoch": leader.epoch, "quorum": True,
             "settled": True},
        )  # fmt: skip

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
            snapshot = self.lab.snapshot()
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
        result.duplicates = count_duplicates(
            Snapshot(
                delivered=snapshot.delivered,
                intents=snapshot.intents,
                ca_certificates=snapshot.ca_certificates,
            )
        )
        result.stale_epoch_rejected = self.db.stale_rejections()
        violations = self._new(check_all(events, snapshot))
        result.lost = sum(1 for v in violations if v.startswith("lost request"))
        result.violations += violations

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
        full = self.lab.snapshot()
        return Snapshot(
            delivered=full.delivered, intents=full.intents, ca_certificates=full.ca_certificates
        )

    def _new(self, violations: list[str]) -> list[str]:
        """Violations not reported before (the state is cumulative across scenarios)."""
        fresh = [v for v in violations if v not in self._reported]
        self._reported.update(fresh)
        return fresh
