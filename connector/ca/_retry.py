"""Named tenacity retry policies whose total time is bounded by the caller's deadline.

    policy = RETRY_POLICIES["issue"]
    for attempt in policy.retrying(deadline=clock() + 3.0, clock=clock, sleep=sleep):
        with attempt:
            call()

Only :class:`~connector.ca.CARetryableError` is retried. An open circuit
(:class:`~connector.ca.CACircuitOpenError`) is waited out only when it lets a
probe through before the deadline; otherwise the call fails at once and its
caller defers the work, rather than sleep to the deadline for nothing. The back-off grows
exponentially (with jitter) but a sleep never reaches past the deadline, and
no attempt starts when fewer than ``min_attempt_s`` would remain: the agent
passes the remaining lease time, so retries never outlive the lease. When it
stops, the last error is re-raised as it was.

A CA cluster that answers "no active node" (:class:`~connector.ca.CAElectingError`)
is retried every ``electing_wait_s`` instead: its election ends at a moment
nobody can predict, and an exponential back-off grown to ``max_wait_s`` while
it ran would add up to that much to the first signature after it (the standby
nodes answer such a call in a millisecond, so asking often costs them little).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity

from connector.ca._errors import CACircuitOpenError, CAElectingError, is_retryable

__all__ = ["ISSUE_POLICY", "RETRY_POLICIES", "REVOKE_POLICY", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    name: str
    initial_wait_s: float
    max_wait_s: float
    multiplier: float = 2.0
    jitter: float = 0.2  # up to +20 % so that connectors do not retry in lock-step
    min_attempt_s: float = 0.02
    electing_wait_s: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.initial_wait_s <= self.max_wait_s:
            raise ValueError(f"retry policy {self.name}: need 0 < initial_wait_s <= max_wait_s")
        if not 0 < self.electing_wait_s <= self.max_wait_s:
            raise ValueError(f"retry policy {self.name}: need 0 < electing_wait_s <= max_wait_s")
        if self.multiplier < 1:
            raise ValueError(f"retry policy {self.name}: multiplier must be >= 1")

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Sleep after failed attempt number ``attempt`` (1-based), before the deadline cap."""
        base = min(self.max_wait_s, self.initial_wait_s * self.multiplier ** (attempt - 1))
        return base * (1 + self.jitter * rng())

    def retrying(
        self,
        deadline: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> tenacity.Retrying:
        def wait(state: tenacity.RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome is not None else None
            if isinstance(failed, CAElectingError):
                pause = self.electing_wait_s * (1 + self.jitter * random.random())
            else:
                pause = self.backoff(state.attempt_number)
            if isinstance(failed, CACircuitOpenError):
                pause = max(pause, failed.retry_after_s)
            return max(0.0, min(pause, deadline - clock()))

        def stop(state: tenacity.RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            return clock() + upcoming >= deadline - self.min_attempt_s

        def retry(exc: BaseException) -> bool:
            if isinstance(exc, CACircuitOpenError):
                return clock() + exc.retry_after_s < deadline - self.min_attempt_s
            return is_retryable(exc)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(retry),
            wait=wait,
            stop=stop,
            sleep=sleep,
            reraise=True,
            before_sleep=before_sleep,
        )


ISSUE_POLICY = RetryPolicy("issue", initial_wait_s=0.05, max_wait_s=1.0)
REVOKE_POLICY = RetryPolicy("revoke", initial_wait_s=0.2, max_wait_s=2.0)
RETRY_POLICIES: dict[str, RetryPolicy] = {p.name: p for p in (ISSUE_POLICY, REVOKE_POLICY)}
