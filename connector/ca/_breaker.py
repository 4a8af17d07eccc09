"""A circuit breaker per CA: closed -> open -> half-open -> closed.

    breaker = CircuitBreaker("primary", failure_threshold=2, reset_timeout=5.0)
    if breaker.allow():            # closed; or half-open and this caller is the one probe
        try:
            call()
        except Unavailable:
            breaker.record_failure()   # threshold reached (or the probe failed): open
        else:
            breaker.record_success()   # closed again
    breaker.state                  # "closed" | "open" | "half_open"

While open, calls are skipped at once (the router goes to the next CA);
after ``reset_timeout`` one probe call is let through (half-open). The clock
is injectable; ``on_change(name, old, new)`` feeds metrics and logs.

Patience (a CA cluster electing a new active node, e.g. OpenBao's Raft)::

    breaker = CircuitBreaker("primary", patience_s=5.0)
    if breaker.wait_out():      # electing for less than patience_s: wait, do not fail over
        ...
    # else: count it as a failure like any other

The patience runs from the first "electing" answer since the last success.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 2,
        reset_timeout: float = 5.0,
        patience_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("breaker failure_threshold must be >= 1")
        if reset_timeout <= 0:
            raise ValueError("breaker reset_timeout must be > 0")
        if patience_s < 0:
            raise ValueError("breaker patience_s must be >= 0")
        self.patience_s = patience_s
        self._electing_since: float | None = None
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def _set(self, new: str) -> None:
        old, self._state = self._state, new
        if old != new and self._on_change is not None:
            self._on_change(self.name, old, new)

    def _tick(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._probe_in_flight = False
            self._set(HALF_OPEN)

    @property
    def state(self) -> str:
        with self._lock:
            self._tick()
            return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def allow(self) -> bool:
        with self._lock:
            self._tick()
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def wait_out(self) -> bool:
        """The CA says it is electing: True while that has lasted less than ``patience_s``.

        True costs the breaker nothing (no failure counted); False means the patience
        has run out and the caller should record a failure as usual.
        """
        with self._lock:
            now = self._clock()
            if self._electing_since is None:
                self._electing_since = now
            return now - self._electing_since < self.patience_s

    def record_success(self) -> None:
        with self._lock:
            self._electing_since = None
            self._failures = 0
            self._probe_in_flight = False
            self._set(CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._tick()
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._probe_in_flight = False
                self._set(OPEN)

    def release(self) -> None:
        """A permitted call ended without telling anything about the CA's health."""
        with self._lock:
            self._probe_in_flight = False
