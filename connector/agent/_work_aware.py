"""Work-aware leadership's bookkeeping: what we fail to reach, who else does, and the line.

    leadership = WorkAwareLeadership(
        name="c1", elector=lambda: agent.elector, templates={"web": ("primary",)},
        loop=LoopSettings(), clock=time.monotonic, state=AgentState(), reach=reach,
    )
    blocked = leadership.unreachable()               # Blocked(what, for_s, able) per failing target
    leadership.withhold(Standing.STANDBY, blocked, now)   # out of the line, or back in
    leadership.publish()                             # our reach into our member node

The agent's loop and its yield watch both ask :meth:`WorkAwareLeadership.unreachable`
(the others' member nodes are read at most twice a refresh, and only while
something of ours fails); the loop, the yield watch and the prober all
publish. Each of these is serialised by its own lock, so an older report is
never written after a newer one. The elector is read through a callable at
each use: the agent is built before its elector and wired to it afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from connector.agent.events import Event, emit
from connector.agent.reach import PeerReach, Reach, ca_target
from connector.agent.snapshot import Blocked, Standing
from connector.agent.state import AgentState
from connector.config import LoopSettings

__all__ = ["WorkAwareLeadership"]

log = logging.getLogger("pfxha.connector.agent")


class WorkAwareLeadership:
    """What we reach (probes + real work), what the others say they reach (read only
    while something of ours fails), and whether we stay out of the election's line."""

    def __init__(
        self,
        *,
        name: str,
        elector: Callable[[], Any],
        templates: Mapping[str, tuple[str, ...]],
        loop: LoopSettings,
        clock: Callable[[], float],
        state: AgentState,
        reach: Reach,
    ) -> None:
        self.name = name
        self._elector = elector
        self.templates = templates
        self.loop = loop
        self.clock = clock
        self.state = state
        self.reach = reach
        self.peers = PeerReach(clock, fresh_s=3 * loop.reach_refresh_s)
        self._peers_read_at = -float("inf")
        self._withheld: str | None = None
        self._withhold_lock = threading.Lock()
        self._eligible: set[str] = set()
        # The loop and the yield watch both read the others' reports.
        self._reach_lock = threading.Lock()
        # The loop, the yield watch and the prober all publish ours: one at a time,
        # or an older report could be written after a newer one.
        self._publish_lock = threading.Lock()

    def unreachable(self) -> tuple[Blocked, ...]:
        """What we have not reached lately, and which other members freshly do."""
        if self.loop.yield_after_s == 0:
            return ()
        with self._reach_lock:
            return self._unreachable_locked()

    def _unreachable_locked(self) -> tuple[Blocked, ...]:
        own: list[tuple[str, float, tuple[str, ...]]] = [
            ("service", self.reach.unreachable_for("service"), ("service",))
        ]
        for template, cas in self.templates.items():
            targets = tuple(ca_target(ca) for ca in cas)
            # Blocked only while every CA of the template fails.
            worst = min((self.reach.unreachable_for(t) for t in targets), default=0.0)
            own.append((f"template {template}", worst, targets))
        failing = [entry for entry in own if entry[1] > 0]
        if not failing:
            return ()
        eligible = self._read_peers()
        service_ok = set(self.peers.able("service", among=eligible))
        found = []
        for what, for_s, targets in failing:
            if targets == ("service",):
                able = service_ok
            else:
                able = {n for t in targets for n in self.peers.able(t, among=eligible)}
                able &= service_ok
            found.append(Blocked(what, for_s, tuple(sorted(able))))
        return tuple(found)

    def _read_peers(self) -> set[str]:
        """Other eligible members; their reports are re-read at most twice a refresh."""
        now = self.clock()
        elector = self._elector()
        read = getattr(elector, "members", None)
        if callable(read) and now - self._peers_read_at >= self.loop.reach_refresh_s / 2:
            self._peers_read_at = now
            try:
                members = read()
            except Exception as exc:  # ZooKeeper busy or gone: keep the last view
                log.debug("reading member nodes failed: %r", exc)
            else:
                # Able only counts for members a switchover can hand to: those in line.
                line = getattr(elector, "line", None)
                in_line = set(line()) if callable(line) else None
                self._eligible = {
                    m.name
                    for m in members
                    if m.name != self.name
                    and not m.nofailover
                    and (in_line is None or m.name in in_line)
                }
                for member in members:
                    if member.name != self.name:
                        self.peers.observe(member.name, member.reach, member.reach_seq)
                self.peers.forget_except(m.name for m in members)
        return set(self._eligible)

    def withhold(self, standing: Standing, unreachable: tuple[Blocked, ...], now: float) -> None:
        """Keep a standby out of the line while it cannot do what another member can."""
        withhold = getattr(self._elector(), "withhold", None)
        if not callable(withhold) or standing is Standing.LEADER:
            return
        reason: str | None = None
        last = self.state.last_yield
        if last is not None and now - last[0] < self.loop.hold_down_s:
            reason = f"handed the lease over ({last[1]} unreachable): hold-down"
        elif last is not None and any(b.what == last[1] for b in unreachable):
            reason = f"still cannot reach {last[1]}"
        else:
            self.state.last_yield = None
            for blocked in unreachable:
                if blocked.for_s >= (self.loop.yield_after_s or float("inf")) and blocked.able:
                    reason = f"cannot reach {blocked.what} while {', '.join(blocked.able)} can"
                    break
        with self._withhold_lock:  # the loop and the yield watch both come here
            if reason != self._withheld:
                self._withheld = reason
                emit(log, Event.WITHHELD, withheld=reason is not None, reason=reason or "-")
            withhold(reason)

    def publish(self) -> None:
        """Our reachability into our member node (the elector writes only on change/refresh)."""
        publish = getattr(self._elector(), "publish_reach", None)
        if callable(publish):
            with self._publish_lock, contextlib.suppress(Exception):
                publish(self.reach.report(), self.loop.reach_refresh_s)
