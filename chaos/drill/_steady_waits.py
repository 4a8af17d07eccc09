"""Waiting for a steady lab before a round: a leader that acts, where placement wants
it, standbys with full key pools and back in the election's line, and the primary CA
in use.

    class DrillEngine(SteadyWaits, RoundMeasure): ...    # the engine's part, not used alone
    engine._wait_steady()        # or LabWedgedError after settle_timeout
    placed = engine._wait_placed()   # False: the round goes on with a note

Steady means one leader in ZooKeeper, the same connector active at the
service, and a certificate accepted under its epoch lately; the waits that
return a bool only add a note to the round when they time out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chaos.checkers.ops import CONNECTORS, OBSERVER
from chaos.drill._engine_base import DrillLab, DrillSettings, LabWedgedError
from chaos.drill.observer import Observer
from chaos.history import History
from chaos.workload import Workload

__all__ = ["SteadyWaits"]


class SteadyWaits:
    """The drill engine's waits for a steady lab (a mixin of :class:`DrillEngine`)."""

    # Set by the engine's constructor.
    lab: DrillLab
    history: History
    observer: Observer
    workload: Workload
    settings: DrillSettings
    sleep: Callable[[float], None]

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

    def _wait_standbys_in_line(self) -> bool:
        """Until every standby is in the election's line again (none withholds itself).

        A member that handed the lease over stays out of the line for its hold-down
        (``loop.hold_down_s``, 5 s in the lab). Rounds run back to back: a cascade
        round's fault came 0.4 s after the heal of the one before, while both members
        that had yielded in it were still held down, and the cut leader could hand
        over only once the first hold-down ended (3.1-3.5 s instead of 2.0-2.1 s;
        2026-12-05, ``pfxha drill --scenario cascade --rounds 5``). A round measures
        one failover from a steady cluster; overlapping faults are ``random``'s.
        """

        def in_line() -> bool:
            return not self.lab.members_out_of_line() - {self.observer.leader.name}

        return self._poll_settle(in_line)

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
