"""How many requests the leader polls for: its cores keep making keys while round trips fly.

    view = HandView(workers=4, batch_size=100, max_in_hand=64, unkeyed=3, in_hand=20)
    take = poll_size(view)          # Take(count=5, reason="...")

    hand = Hand(workers=4, batch_size=100, max_in_hand=64)   # the executor's counts
    hand.took(8); hand.capacity                              # 0: the key stage is full
    opened = hand.keyed()          # True once room for a poll opens: wake the loop
    opened = hand.finished()       # a request left the hand

A request in hand goes through two stages: its key (CPU, on this host) and
then its calls (intent, CA, upload: waiting on the network, no CPU). Only the
first stage needs bounding by the cores: up to ``2 * workers`` requests wait
for or make their key, and the hand is refilled once at most ``workers`` of
them are left, so the next poll's round trip overlaps the keys of the other
half. The key pool makes them one per CPU at a time
(:class:`connector.pki.KeyPool`, ``on_demand``), so those left have their
keys still ahead of them: ``workers`` keys of CPU work cover the round trip.
Requests past their key cost a thread and nothing else; bounding them
by the first stage (as a single "two per worker" count did) leaves the cores
idle for every round trip a batch waits on, which across a WAN (80 ms each,
three per batch) is most of the time. They are bounded by ``max_in_hand``
instead: enough to cover the round trips, few enough that a failover does not
strand many (a new epoch ignores older poll leases at the service, so a
successor takes them over at once anyway).

:func:`poll_size` is pure (no I/O, no clock); :class:`Hand` keeps the counts
for the executor's threads and says when room for a poll opens, so the loop is
woken then rather than after every key and every request (each wake is a turn
of the loop, CPU the leader's keys do not get).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Hand", "HandView", "Take", "poll_size"]


@dataclass(frozen=True)
class HandView:
    """What the executor has in hand now, and its bounds."""

    workers: int
    batch_size: int
    max_in_hand: int
    # Polled and not finished (any stage).
    in_hand: int = 0
    # Polled and still waiting for (or making) their key.
    unkeyed: int = 0


@dataclass(frozen=True)
class Take:
    count: int
    reason: str


def poll_size(view: HandView) -> Take:
    """How many requests to poll for now (0: none), and why."""
    key_stage = 2 * view.workers
    free_keys = key_stage - view.unkeyed
    if free_keys < view.workers:
        return Take(0, f"{view.unkeyed} request(s) wait for a key: over half of {key_stage}")
    room = view.max_in_hand - view.in_hand
    if room < view.workers:
        # A poll for one or two would cost a round trip and a commit each.
        return Take(0, f"{view.in_hand} request(s) in hand, of at most {view.max_in_hand}")
    count = min(view.batch_size, free_keys, room)
    return Take(count, f"{view.unkeyed} waiting for a key, {view.in_hand} in hand")


class Hand:
    """Requests in hand and waiting for their key, counted across threads."""

    def __init__(self, *, workers: int, batch_size: int, max_in_hand: int) -> None:
        self._bounds = HandView(workers=workers, batch_size=batch_size, max_in_hand=max_in_hand)
        self._lock = threading.Lock()
        self._in_hand = 0
        self._unkeyed = 0
        self._could_poll = True

    def view(self) -> HandView:
        with self._lock:
            return self._view()

    @property
    def in_hand(self) -> int:
        with self._lock:
            return self._in_hand

    @property
    def capacity(self) -> int:
        with self._lock:
            return poll_size(self._view()).count

    def took(self, count: int) -> None:
        """``count`` requests polled: in hand, each waiting for its key."""
        with self._lock:
            self._in_hand += count
            self._unkeyed += count
            self._opened()

    def keyed(self) -> bool:
        """One request has its key (or gave up before it); True: room for a poll opened."""
        with self._lock:
            self._unkeyed -= 1
            return self._opened()

    def finished(self, *, keyed: bool = True) -> bool:
        """One request left the hand (``keyed``: it had left the key stage already)."""
        with self._lock:
            self._in_hand -= 1
            if not keyed:
                self._unkeyed -= 1
            return self._opened()

    def _view(self) -> HandView:
        b = self._bounds
        return HandView(b.workers, b.batch_size, b.max_in_hand, self._in_hand, self._unkeyed)

    def _opened(self) -> bool:
        can = poll_size(self._view()).count > 0
        opened = can and not self._could_poll
        self._could_poll = can
        return opened
