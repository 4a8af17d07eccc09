"""Reachability probes: every member asks the service and each CA, on a short interval.

    prober = ReachProber(reach, {"service": service.probe, "ca:primary": partial(...)},
                         interval_s=2.0, timeout_s=2.0, on_change=agent.wake)
    prober.start()        # a daemon thread; each round probes every target side by side
    prober.stop()

A target that answered real work within half an interval is not probed that
round (a leader's own calls prove it; see :meth:`ReachProber.probe_once`).

A probe is a callable ``probe(timeout=...)`` that returns when the target
answered and raises when it did not (connection, TLS, timeout, 5xx); an answer
that refuses us still proves reachability and must not raise. Real work feeds
the same :class:`~connector.agent.reach.Reach` (the executor records every
service call), so a leader's verdict rests on both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from connector.agent.reach import Reach

__all__ = ["Probe", "ReachProber"]

log = logging.getLogger("pfxha.connector.probes")

Probe = Callable[[float], bool]
"""``probe(timeout_s) -> reached``; never raises (see :func:`probe_of`)."""


def probe_of(call: Callable[..., object]) -> Probe:
    """Wrap ``call(timeout=...)`` into a :data:`Probe`: unreachable when it raises or
    returns False (``CARouter.probe`` answers with a bool, the service client raises)."""

    def probe(timeout_s: float) -> bool:
        try:
            answered = call(timeout=timeout_s)
        except Exception as exc:
            log.debug("probe failed: %r", exc)
            return False
        return answered is not False

    return probe


class ReachProber:
    """Runs every probe each ``interval_s`` and records the outcomes in ``reach``."""

    def __init__(
        self,
        reach: Reach,
        probes: Mapping[str, Probe],
        *,
        interval_s: float,
        timeout_s: float,
        on_change: Callable[[], None] = lambda: None,
        on_outcome: Callable[[str, bool], None] = lambda _target, _ok: None,
    ) -> None:
        self.reach = reach
        self.probes = dict(probes)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.on_outcome = on_outcome
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.probes)), thread_name_prefix="pfxha-probe"
        )
        self._last: dict[str, bool] = {}

    def probe_once(self) -> None:
        # A target that answered real work within half an interval needs no probe:
        # a busy leader's calls say more than a probe would, and each probe is a
        # round trip and CPU the leader's keys do not get. A failure still shows
        # within an interval: the next round probes once that answer has aged.
        skipped = {t for t in self.probes if self.reach.answered_within(t, self.interval_s / 2)}
        futures = {
            target: self._pool.submit(probe, self.timeout_s)
            for target, probe in self.probes.items()
            if target not in skipped
        }
        outcomes = {target: True for target in skipped}
        for target, future in futures.items():
            ok = bool(future.result())
            self.reach.record(target, ok=ok)
            outcomes[target] = ok
        changed = False
        for target, ok in outcomes.items():
            self.on_outcome(target, ok)
            changed |= self._last.get(target) != ok
            self._last[target] = ok
        if changed:
            self.on_change()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.probe_once()
            except Exception:  # a probe must never end the probing
                log.exception("reachability probe failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pfxha-reach-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
