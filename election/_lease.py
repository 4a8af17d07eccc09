"""Lease freshness: may this member act as the leader right now, and under which epoch?

    lease = Lease(validity_s=config.lease_s)
    lease.grant(epoch=7, confirmed_at=started)   # the take transaction committed
    lease.confirm(started)                       # after each successful round trip
    lease.revoke()                               # SUSPENDED, LOST, our node deleted: at once
    lease.fresh_epoch()                          # 7 while fresh, else None
    lease.end()                                  # demoted: no epoch at all

    watch = lease.watcher(on_event)              # for exists(/leader, watch=watch)

Why "fresh": after every successful round trip the leader records the time
*before* it sent the request. ZooKeeper cannot have expired the session earlier
than ``session_timeout`` after that moment, so trusting the lease for
``validity_s`` (at most 2/3 of the session timeout) is safe even if the process
was paused in between (a monotonic clock keeps running while stopped).
Revocation comes from kazoo's own threads, before the elector's loop wakes:
every method is thread-safe and none blocks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from kazoo.protocol.states import EventType, WatchedEvent

__all__ = ["Lease"]


class Lease:
    """The lease one member holds (or not), judged on its own monotonic clock."""

    def __init__(self, validity_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.validity_s = validity_s
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._ok = False
        self._confirmed_at = -math.inf
        # One watch callback per leadership (see watcher): kazoo keeps watchers in a
        # set, so reusing the callable keeps re-armed watches from piling up.
        self._watcher: tuple[int | None, Callable[[WatchedEvent], None]] | None = None

    @property
    def epoch(self) -> int | None:
        """The epoch we were granted, fresh or not; None when we do not lead."""
        return self._epoch

    @property
    def held(self) -> bool:
        """Granted and not revoked (freshness aside)."""
        return self._ok

    def grant(self, epoch: int, confirmed_at: float) -> None:
        with self._lock:
            self._epoch = epoch
            self._ok = True
            self._confirmed_at = confirmed_at

    def confirm(self, started: float) -> None:
        """A round trip sent at ``started`` succeeded and showed the lease still ours."""
        with self._lock:
            self._confirmed_at = started

    def revoke(self) -> None:
        """Stop acting now; the loop steps down (or resumes) when it has looked."""
        with self._lock:
            self._ok = False

    def end(self) -> None:
        with self._lock:
            self._ok = False
            self._epoch = None

    def fresh_epoch(self) -> int | None:
        with self._lock:
            if not self._ok or self._epoch is None:
                return None
            if self._clock() - self._confirmed_at > self.validity_s:
                return None
            return self._epoch

    def watcher(self, then: Callable[[WatchedEvent], None]) -> Callable[[WatchedEvent], None]:
        """The watch for /leader and our election node, bound to the current leadership.

        A watch set while standing by may fire after we took the lease: the crash
        takeover deletes the dead leader's /leader in the same transaction that
        creates ours, and the stale DELETED event arrives once we already lead. Only
        a watch armed during *this* leadership revokes *this* lease; every event is
        then passed to ``then`` (which wakes the loop).
        """
        armed_for = self._epoch
        if self._watcher is not None and self._watcher[0] == armed_for:
            return self._watcher[1]

        def on_event(event: WatchedEvent) -> None:
            if event.type == EventType.DELETED and armed_for is not None:
                with self._lock:
                    if armed_for == self._epoch:
                        self._ok = False
            then(event)

        self._watcher = (armed_for, on_event)
        return on_event
