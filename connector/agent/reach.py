"""What this member can reach, and which other members can, each judged on its own clock.

    reach = Reach(clock=time.monotonic, stale_s=2.0)
    reach.record("service", ok=True)         # a probe or real work succeeded
    reach.record("ca:primary", ok=False)     # connection error, TLS error, timeout, 5xx
    reach.unreachable_for("service")         # 0.0 while it works, else seconds since a success
    reach.any_failing()                      # False while every latest outcome was a success
    reach.report()                           # {"service": "ok", "ca:primary": "failed"}

    peers = PeerReach(clock=time.monotonic, fresh_s=6.0)
    peers.observe("c2", {"service": "ok"}, seq=41)   # each read of c2's member node
    peers.able("service")                    # ("c2",): freshly and continuously reporting "ok"

Targets are ``"service"`` and ``"ca:<name>"``. A 4xx refusal is an answer, not
a reachability failure, and is never recorded here.

No clock is ever compared across hosts. A member publishes a word per target
and a sequence number it bumps at least every refresh interval; a reader notes
on its *own* monotonic clock when it saw the number change. A report is fresh
while that happened within ``fresh_s``; a member is *able* to reach a target
when its two latest fresh reports, with a refresh between them, both said ok.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["OK", "UNREACHABLE", "PeerReach", "Reach", "ca_target"]

OK = "ok"
UNREACHABLE = "failed"


def ca_target(name: str) -> str:
    return f"ca:{name}"


@dataclass
class _Target:
    last_ok: float | None = None
    last_outcome_ok: bool = True
    first_seen: float = 0.0


class Reach:
    """This member's own record: outcomes of probes and of real work, per target."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, stale_s: float = 2.0) -> None:
        self._clock = clock
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}

    def record(self, target: str, *, ok: bool) -> None:
        now = self._clock()
        with self._lock:
            state = self._targets.setdefault(target, _Target(first_seen=now))
            state.last_outcome_ok = ok
            if ok:
                state.last_ok = now

    def unreachable_for(self, target: str) -> float:
        """Seconds since the last success, once the latest outcome is a failure; else 0.

        Counting from the last success (not the first failure) matters when the
        link swallows packets: the failure only shows when a call times out.
        """
        now = self._clock()
        with self._lock:
            state = self._targets.get(target)
            if state is None or state.last_outcome_ok:
                return 0.0
            since = state.last_ok if state.last_ok is not None else state.first_seen
        return max(0.0, now - since)

    def answered_within(self, target: str, seconds: float) -> bool:
        """The latest outcome is a success, no older than ``seconds`` (from a probe or
        from real work)."""
        now = self._clock()
        with self._lock:
            state = self._targets.get(target)
            if state is None or not state.last_outcome_ok or state.last_ok is None:
                return False
            return now - state.last_ok <= seconds

    def any_failing(self) -> bool:
        """Whether the latest outcome of any target was a failure (no clock, one lock)."""
        with self._lock:
            return any(not state.last_outcome_ok for state in self._targets.values())

    def ok(self, target: str) -> bool:
        """Reached recently (within ``stale_s``), and the latest outcome was a success."""
        return self.answered_within(target, self.stale_s)

    def report(self) -> dict[str, str]:
        with self._lock:
            targets = sorted(self._targets)
        return {target: OK if self.ok(target) else UNREACHABLE for target in targets}


@dataclass
class _Peer:
    seq: int
    report: Mapping[str, str]
    changed_at: float
    previous: Mapping[str, str] | None = None


class PeerReach:
    """Other members' published reports, as this member has seen them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, fresh_s: float = 6.0) -> None:
        self._clock = clock
        self.fresh_s = fresh_s
        self._peers: dict[str, _Peer] = {}

    def observe(self, name: str, report: Mapping[str, str], seq: int) -> None:
        now = self._clock()
        peer = self._peers.get(name)
        if peer is None:
            self._peers[name] = _Peer(seq, dict(report), now)
        elif seq != peer.seq:
            self._peers[name] = _Peer(seq, dict(report), now, previous=peer.report)

    def forget_except(self, names: Iterable[str]) -> None:
        """Drop members that are gone (their member node was not there)."""
        keep = set(names)
        for name in list(self._peers):
            if name not in keep:
                del self._peers[name]

    def able(self, target: str, among: Iterable[str] | None = None) -> tuple[str, ...]:
        """Members (sorted) that freshly and continuously report ``target`` reachable."""
        now = self._clock()
        allowed = set(among) if among is not None else None
        found = []
        for name, peer in sorted(self._peers.items()):
            if allowed is not None and name not in allowed:
                continue
            if now - peer.changed_at > self.fresh_s or peer.previous is None:
                continue
            if peer.report.get(target) == OK and peer.previous.get(target) == OK:
                found.append(name)
        return tuple(found)
