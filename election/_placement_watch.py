"""The placement watch: asks this host's ZooKeeper server what it is, and acts on the rule.

    watch = PlacementWatch(elector, "10.0.0.2:2181", interval_s=0.5, min_s=60.0,
                           budget=YieldBudget(3, 3600.0))
    watch.start()            # a daemon thread: look_once() every interval_s
    watch.look_once()        # Placement(Move.STAY, "our host's ZooKeeper server is a follower")
    watch.stop()

    watch = placement_watch_for(elector, config, on_event=notify)   # None: placement off

Every look sends one ``srvr`` to the local server (no ZooKeeper session, no
write). A change of seat is published in our member node (``zk_seat``: one write
per change; ZooKeeper leaders move rarely). The others' seats are read from
their member nodes only while ours is the leader's seat: at every look while a
member in line has not said its seat yet (one that just joined), else when the
line changes or every ``_SEATS_REFRESH_LOOKS`` looks. A drill heals a host and
faults the next one a second or two later; the first standby must be in place
by then (a 2 s cache was too slow for that in a hosts drill round). The rule itself is the
pure :func:`election._placement.decide_placement`; a hand-over goes through
:meth:`Elector.hand_over` with the placement budget (``/yields/p-*``, apart
from the gray-failure yields' ``y-*``), a requeue through
:meth:`Elector.requeue`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from election._config import ElectionConfig
from election._model import Candidate, MemberInfo
from election._placement import Move, Placement, PlacementView, ZkSeat, decide_placement
from election._yield_budget import HandOver, YieldBudget
from election._zk_seat import colocated_server, read_seat

__all__ = ["PLACEMENT_KIND", "LineFacts", "PlacementPort", "PlacementWatch", "placement_watch_for"]

log = logging.getLogger("pfxha.election")

PLACEMENT_KIND = "p"
# The others' seats, all known, are re-read at least this often (in looks) while
# ours leads ZooKeeper.
_SEATS_REFRESH_LOOKS = 10
# A hand-over (requeue) requested is not requested again for this long: the
# elector carries it out on its next step, milliseconds later.
_HAND_OVER_PATIENCE_S = 5.0
_REQUEUE_PATIENCE_S = 1.0


@dataclass(frozen=True)
class LineFacts:
    """The elector's last look: are we leading, since when, the line, who leads, paused."""

    leading: bool
    in_office_s: float
    line: tuple[Candidate, ...]
    leader: str | None
    paused: bool


class PlacementPort(Protocol):
    """What the watch needs of the elector."""

    @property
    def name(self) -> str: ...
    def line_facts(self) -> LineFacts | None: ...
    def members(self) -> tuple[MemberInfo, ...]: ...
    def publish_seat(self, seat: ZkSeat) -> None: ...
    def requeue(self, reason: str) -> None: ...
    def hand_over(
        self, to: str, reason: str, budget: YieldBudget, *, kind: str = ...
    ) -> HandOver: ...


class PlacementWatch:
    def __init__(
        self,
        port: PlacementPort,
        server: str,
        *,
        interval_s: float,
        min_s: float,
        budget: YieldBudget,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[str, float], ZkSeat] = read_seat,
        on_event: Callable[[str, str], None] = lambda _event, _detail: None,
    ) -> None:
        self.port = port
        self.server = server
        self.interval_s = interval_s
        self.min_s = min_s
        self.budget = budget
        self._clock = clock
        self._read = read
        self._on_event = on_event
        self._seat = ZkSeat.UNKNOWN
        self._seat_since = clock()
        self._seats: Mapping[str, ZkSeat] = {}
        self._seats_line: tuple[str, ...] | None = None
        self._seats_age = 0
        self._handed_at = -float("inf")
        self._requeued_at = -float("inf")
        self._refused: tuple[float, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: Placement | None = None

    @property
    def seat(self) -> ZkSeat:
        return self._seat

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"pfxha-placement-{self.port.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s + 1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.look_once()  # the first at once: a member that starts says its seat
            except Exception:
                log.exception("[5069] placement look failed", extra={"event_id": 5069})
            self._stop.wait(self.interval_s)

    def look_once(self) -> Placement:
        """One look: read our server's seat, publish a change, decide, act."""
        seat = self._read(self.server, min(self.interval_s, 1.0))
        now = self._clock()
        if seat is not self._seat:
            log.info(
                "[5060] %s: the ZooKeeper server on this host (%s) is now %s (was %s)",
                self.port.name,
                self.server,
                seat.value or "unknown",
                self._seat.value or "unknown",
                extra={"event_id": 5060, "zk_seat": seat.value},
            )
            self._seat, self._seat_since = seat, now
            self.port.publish_seat(seat)
            self._on_event("seat", seat.value or "unknown")
        facts = self.port.line_facts()
        if facts is None:
            return self._done(Placement(Move.STAY, "not connected"))
        if self._refused is not None and now >= self._refused[0]:
            self._refused = None
        view = PlacementView(
            me=self.port.name,
            leading=facts.leading,
            seat=seat,
            seat_for_s=now - self._seat_since,
            line=facts.line,
            leader=facts.leader,
            seats=self._others(seat, facts),
            in_office_s=facts.in_office_s,
            min_s=self.min_s,
            paused=facts.paused,
            budget_refused=self._refused[1] if self._refused is not None else None,
        )
        decision = decide_placement(view)
        if (decision.move is Move.HAND_OVER and now - self._handed_at < _HAND_OVER_PATIENCE_S) or (
            decision.move is Move.REQUEUE and now - self._requeued_at < _REQUEUE_PATIENCE_S
        ):
            return self._done(Placement(Move.STAY, "a move requested a moment ago is under way"))
        if decision.move is Move.HAND_OVER:
            assert decision.to is not None
            self._hand_over(decision, now)
        elif decision.move is Move.REQUEUE:
            self._requeued_at = now
            log.info("[5062] %s: %s", self.port.name, decision.reason, extra={"event_id": 5062})
            self.port.requeue(decision.reason)
            self._on_event("requeue", decision.to or "")
        return self._done(decision)

    def _done(self, decision: Placement) -> Placement:
        self.last = decision
        return decision

    def _hand_over(self, decision: Placement, now: float) -> None:
        assert decision.to is not None
        result = self.port.hand_over(decision.to, decision.reason, self.budget, kind=PLACEMENT_KIND)
        if result.done:
            self._handed_at = now
            log.warning("[5061] %s: %s", self.port.name, decision.reason, extra={"event_id": 5061})
            self._on_event("hand_over", decision.to)
            return
        if result.budget_spent:
            # Not again before a claim could have left the window.
            self._refused = (now + self.budget.window_s / max(1, self.budget.limit), result.why)
            log.warning(
                "[5063] %s keeps the lease on the ZooKeeper leader's host: %s",
                self.port.name,
                result.why,
                extra={"event_id": 5063},
            )
            self._on_event("refused", result.why)
        else:
            log.info("[5064] placement hand-over not done: %s", result.why)

    def _others(self, seat: ZkSeat, facts: LineFacts) -> Mapping[str, ZkSeat]:
        """The others' seats: read only while ours leads ZooKeeper (cached a few looks)."""
        if seat is not ZkSeat.LEADER or facts.paused:
            self._seats_line = None
            return {}
        names = tuple(c.name for c in facts.line)
        self._seats_age += 1
        me = self.port.name
        unsaid = any(self._seats.get(n, ZkSeat.UNKNOWN) is ZkSeat.UNKNOWN for n in names if n != me)
        if names != self._seats_line or unsaid or self._seats_age >= _SEATS_REFRESH_LOOKS:
            members = self.port.members()
            self._seats = {m.name: _seat_of(m) for m in members if m.name != self.port.name}
            self._seats_line, self._seats_age = names, 0
        return self._seats


def _seat_of(member: MemberInfo) -> ZkSeat:
    try:
        return ZkSeat(member.zk_seat)
    except ValueError:
        return ZkSeat.UNKNOWN


def placement_watch_for(
    port: PlacementPort,
    config: ElectionConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_event: Callable[[str, str], None] = lambda _event, _detail: None,
) -> PlacementWatch | None:
    """The watch of a member whose host runs one of the ensemble's servers, else None.

    Says which (event 5065): placement on and the server, or why it stays off.
    """
    server, why = colocated_server(config.colocated_server, config.hosts)
    if server is None:
        if config.colocated_server:
            log.warning("[5065] %s: %s", config.name, why, extra={"event_id": 5065})
        return None
    log.info(
        "[5065] %s: placement on, this host's ZooKeeper server is %s (%s)",
        config.name,
        server,
        why,
        extra={"event_id": 5065},
    )
    return PlacementWatch(
        port,
        server,
        interval_s=config.placement_probe_interval,
        min_s=config.placement_min_in_office,
        budget=YieldBudget(config.placement_budget, config.placement_budget_window),
        clock=clock,
        on_event=on_event,
    )
