"""A leader's heartbeat between full reads: two nodes confirmed instead of seven read.

    views = ViewCache(clock=time.monotonic, full_every_s=1.0)
    view = views.reusable(session_id)     # the last full read, or None: read everything
    if view is None or not nodes.unchanged(own_path, view):
        views.reading()                   # before the read: a watch firing during it counts
        view = nodes.read(own_path, lease_watch, wake)
        views.remember(session_id, view)
    views.changed()                       # from every watch and connection-state callback
    views.forget()                        # after any act that writes the election's nodes

A full read lists the election line and reads /leader, /switchover and /pause
with watches, every heartbeat (a fifth of the session timeout). While the
leader holds the lease nothing there moves without a watch firing, so between
full reads a heartbeat only has to prove a round trip still succeeds and that
/leader and our own node are as the last full read saw them
(:meth:`election._cluster_nodes.ClusterNodes.unchanged`); it re-reads
everything when a watch fired, when the session changed, after its own writes,
and at least every ``full_every_s`` in case a watch was lost. The pipelined
reads cost the ZooKeeper servers little but the leader's own process a lot
(kazoo serialises and parses every reply in Python, on the host whose cores make
the keys): a saturated leader of ``pfxha bench flow`` spent about 13 ms of CPU a
second in its elector and kazoo threads (per-thread schedstat, 2-core VM).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from election._cluster_nodes import ClusterView

__all__ = ["ViewCache"]


class ViewCache:
    """The last full read of a leading member, reusable while no watch has fired."""

    def __init__(self, *, full_every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every_s = full_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = True
        self._last: tuple[int, float, ClusterView] | None = None

    def reusable(self, session_id: int) -> ClusterView | None:
        """The last full read of this session, if nothing it watches changed since."""
        with self._lock:
            last = self._last
            if self._changed or last is None or last[0] != session_id:
                return None
            if self._clock() - last[1] >= self.full_every_s:
                return None
            return last[2]

    def reading(self) -> None:
        """A full read is about to start: changes from now on are the next read's."""
        with self._lock:
            self._changed = False

    def remember(self, session_id: int, view: ClusterView) -> None:
        with self._lock:
            self._last = (session_id, self._clock(), view)

    def changed(self) -> None:
        """A watch fired or the connection changed: the next heartbeat reads everything."""
        with self._lock:
            self._changed = True

    def forget(self) -> None:
        with self._lock:
            self._last = None
