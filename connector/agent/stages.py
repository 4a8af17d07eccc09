"""Where an issuing thread's CPU goes, stage by stage (its own CPU time, not the wall).

    clock = StageClock(record=metrics.observe_issue_cpu)   # one per request
    with clock("key"):
        key = pki.new_key(key_type)
    with clock("ca"):
        issued = issuer.issue(csr, template, request_id, deadline)
    clock.close()      # the request's CPU outside every named stage goes to "other"

Stages do not nest: a stage inside another would be counted twice.

Each stage reports the CPU seconds its thread spent inside the block, so a
block that waits (a call group gathering its members, a CA taking its time)
costs what its thread really computed, not how long it waited. The leader's
issuing cost is what bounds its throughput (keys and the rest share its
cores); a stage's share per request is the breakdown ``pfxha bench flow``
prints. A clock costs two ``thread_time`` calls per stage (about a
microsecond each), and ``record`` is called once per stage and once at
:meth:`close`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["OTHER", "StageClock"]

OTHER = "other"
"""The request's CPU outside every named stage: events, fences, hand-offs."""


class StageClock:
    """Thread CPU per named stage of one request, reported to ``record(stage, seconds)``."""

    def __init__(
        self,
        record: Callable[[str, float], None],
        *,
        now: Callable[[], float] = time.thread_time,
    ) -> None:
        self._record = record
        self._now = now
        self._started = now()
        self._staged = 0.0
        self._closed = False

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = self._now()
        try:
            yield
        finally:
            spent = max(0.0, self._now() - started)
            self._staged += spent
            self._record(stage, spent)

    def close(self) -> None:
        """Report what the request cost outside the named stages (once)."""
        if self._closed:
            return
        self._closed = True
        self._record(OTHER, max(0.0, self._now() - self._started - self._staged))
