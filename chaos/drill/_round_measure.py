"""How a round's numbers come out of what the observer saw: the recovery, the new
leader, the failover and the latency of the requests the fault delayed.

    class DrillEngine(SteadyWaits, RoundMeasure): ...    # the engine's part, not used alone
    recovered = engine._wait_recovery(scenario, old_epoch, start)   # the first such certificate
    engine._measure(outcome, scenario, recovered, healed_at)        # fills the RoundResult

What counts as recovered depends on the scenario's kind: a newer epoch's
certificate after a leader fault, the other CA's after a CA fault, the third
leadership's after a cascade. Observer times are service ("Unix") times and
are converted to history times before any comparison with the fault.
"""

from __future__ import annotations

from collections.abc import Callable

from chaos.checkers.state import IssuedRow, ServiceDb
from chaos.drill._engine_base import DrillLab, DrillSettings
from chaos.drill.observer import LeaderChange, Observer
from chaos.drill.result import RoundResult
from chaos.drill.scenarios import HELD, Scenario
from chaos.history import History
from chaos.launch import LaunchError

__all__ = ["RoundMeasure"]


class RoundMeasure:
    """The drill engine's measurements of one round (a mixin of :class:`DrillEngine`)."""

    # Set by the engine's constructor.
    lab: DrillLab
    history: History
    observer: Observer
    db: ServiceDb
    settings: DrillSettings
    sleep: Callable[[float], None]

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
            # ca-node: signed after the fault for sure (its request came after it),
            # and by the primary itself where its cluster must serve through the fault.
            if (
                scenario.kind == "ca-node"
                and self.observer.to_history_time(row.created) >= start
                and (not scenario.recover_at_primary or row.ca == self.lab.primary_ca)
            ):
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
