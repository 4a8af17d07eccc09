"""Draining a drill's backlog: wait while the open work keeps shrinking.

    left = lambda: requests + revocations + devices still to collect
    seconds = drain(left, timeout=45.0, clock=time.monotonic, sleep=time.sleep)

    # then: the lab's state once no extra certificate waits for its revocation
    state, waited = settle(lab.snapshot, lambda s: count_duplicates(s) > 0,
                           timeout=45.0, clock=time.monotonic, sleep=time.sleep)

A request counts as lost when nothing moved for ``timeout`` seconds, not when
the queue was long: rounds of faults on a loaded 2-core machine leave a backlog
it clears in minutes (a 20-round zk-quorum-loss left 339 requests pending at a
fixed 45 s drain, with 3-8 certificates still delivered every second). The
whole drain is capped at ``cap`` timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["DRAIN_CAP", "drain", "settle"]

S = TypeVar("S")

# The drain goes on while the backlog shrinks, up to this many drain timeouts.
DRAIN_CAP = 10


def drain(
    left: Callable[[], int],
    *,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    cap: int = DRAIN_CAP,
    poll_s: float = 0.5,
) -> float:
    """Until ``left()`` is 0, or it did not fall for ``timeout`` s; the seconds it took."""
    started = clock()
    end = started + cap * timeout
    best: int | None = None
    deadline = started + timeout
    while (now := clock()) < min(deadline, end):
        remaining = left()
        if remaining == 0:
            break
        if best is None or remaining < best:
            best, deadline = remaining, now + timeout
        sleep(poll_s)
    return clock() - started


def settle(
    read: Callable[[], S],
    unsettled: Callable[[S], bool],
    *,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    poll_s: float = 0.5,
) -> tuple[S, float]:
    """``read()`` again while ``unsettled(state)``, for up to ``timeout`` s.

    Returns the last state read and the seconds waited (0 when the first one
    was settled). Work the service does not count can outlive the drain: a
    CA that signed and lost its answer leaves a late certificate the leader
    revokes once that CA's circuit closes again, seconds later.
    """
    started = clock()
    state = read()
    waited = False
    while unsettled(state) and clock() - started < timeout:
        sleep(poll_s)
        waited = True
        state = read()
    return state, (clock() - started) if waited else 0.0
