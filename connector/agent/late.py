"""Keys given up on are watched for a while: a certificate that arrives late is revoked.

A sign request can outlive the decision to give up on it. A link that drops
packets holds the request while TCP retransmits and delivers it once it heals;
if by then the request was settled without it (a new leader's reconciliation
searched the intent's key, found nothing and requeued the request; a sweep of
the same epoch did the same after an ambiguous CA failure), the CA signs for a
key nobody will ever deliver: an unrevoked orphan. No certificate for such a
key can be delivered any more (the request is issued anew with a new key, and
the service takes a result only for the current intent's key), so revoking
whatever turns up for it is always safe.

Every key given up on that way is watched for ``window_s``: each sweep searches
the CAs for it again and revokes (``superseded``) every unrevoked certificate
found. The window only has to outlast a request still on its way: the CA
clients abort a connection they give up on (``SO_LINGER`` 0, so unsent bytes
die with it rather than arrive later), which bounds that by the sender's CA
deadline; the window adds margin for a sender on another host::

    watch = LateWatch(window_s=30.0)
    watch.add("r1", public_key_pem, epoch=6)     # requeued: nothing found for this key
    watch.inherit(reply.superseded, reply.uncertain)   # what a registration hands over
    report = sweep_late(watch, issuer, fence, deadline=deadline, is_retryable=is_retryable)
    report.revoked       # OrphanRevocation(...) for each late certificate
    len(watch)           # entries still inside their window

What to revoke is decided by :func:`plan_late`, a pure function.

The watch outlives the lease that filled it. Revoking needs no lease (no
certificate for a watched key can be delivered, by anyone), and the successor
does not know these keys: a leader that searched a key, found nothing and is
deposed a moment later is the only one left who would ever look again. So a
standby goes on sweeping what it watched while it led, off its loop (a search
that waits for a CA must not hold a takeover back), one sweep at a time::

    sweeps = LateSweeps(watch, issuer, name="c1", deadline=deadline,
                        is_retryable=is_retryable, on_report=count)
    sweeps.now(fence)          # leading: on the loop, fenced; None if one runs already
    sweeps.in_background()     # standing by: unfenced, on a thread; False if one runs
    sweeps.close()

A process can end inside the window too (a crash, a restart). So every new
leader asks the service at its registration for the keys of intents given up
on lately (requeued, maybe issued anew under another key) and watches them for
what is left of their window (``watch.add(..., age_s=...)``): the watch
outlives the process that kept it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from connector.agent.ports import Fence, Issued, Issuer
from connector.agent.reconcile import (
    OrphanRevocation,
    plan_orphans,
    revoke_orphans,
    search_keys,
)
from connector.service_client import Superseded, Uncertain

__all__ = ["LateReport", "LateSweeps", "LateWatch", "Watched", "plan_late", "sweep_late"]

log = logging.getLogger("pfxha.connector.late")

# More than this many keys watched at once: the oldest make way (and say so).
MAX_WATCHED = 4096


@dataclass(frozen=True)
class Watched:
    request_id: str
    public_key_pem: str
    # The epoch of the intent whose key this is.
    epoch: int
    until: float
    # (CA, serial) of the one certificate delivered for this key, if any: never revoked.
    keep: tuple[str, int] | None = None


@dataclass
class LateReport:
    searched: int = 0
    revoked: list[OrphanRevocation] = field(default_factory=list)
    # Late certificates at a CA that did not take the revocation: tried again next sweep.
    deferred: list[OrphanRevocation] = field(default_factory=list)
    # Keys the CAs could not be searched for this time (still watched).
    blind: int = 0


def plan_late(entry: Watched, found: Sequence[Issued]) -> list[OrphanRevocation]:
    """Pure: every unrevoked certificate found for a watched key must be revoked,
    but the one delivered for it (``entry.keep``).

    A key given up on was settled without any certificate, so each one that turned
    up is a late orphan. A key delivered from one CA after another may have signed
    (its answer lost) is watched with the delivered one kept: only one may stay valid.
    """
    others = [c for c in found if (c.ca_name, c.serial) != entry.keep]
    return plan_orphans(entry.request_id, entry.epoch, others)


class LateWatch:
    """Thread-safe: keys given up on, each until its window ends."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], Watched] = {}

    def add(
        self,
        request_id: str,
        public_key_pem: str,
        *,
        epoch: int,
        keep: tuple[str, int] | None = None,
        age_s: float = 0.0,
    ) -> None:
        """Watch this key for ``window_s`` (again, if it is watched already) counted from
        ``age_s`` seconds ago (a key given up on elsewhere, told by the service; nothing
        is watched when that window has passed); ``keep``: the (CA, serial) delivered
        for it, which is never revoked."""
        if self.window_s == 0 or age_s >= self.window_s:
            return
        until = self._clock() + self.window_s - max(0.0, age_s)
        with self._lock:
            self._entries[(request_id, public_key_pem)] = Watched(
                request_id, public_key_pem, epoch, until, keep
            )
            while len(self._entries) > MAX_WATCHED:
                oldest = min(self._entries, key=lambda k: self._entries[k].until)
                dropped = self._entries.pop(oldest)
                log.warning(
                    "late watch full (%d keys): no longer watching request %s",
                    MAX_WATCHED,
                    dropped.request_id,
                )

    def inherit(self, given_up: Iterable[Superseded], delivered: Iterable[Uncertain]) -> None:
        """Watch what a registration hands over, maybe from a process that is gone now,
        each for what is left of its window: keys given up on, and keys delivered while
        another CA may still sign them (the delivered certificate kept)."""
        for key in given_up:
            self.add(key.request_id, key.public_key_pem, epoch=key.epoch, age_s=key.age_s)
        for kept in delivered:
            self.add(
                kept.request_id,
                kept.public_key_pem,
                epoch=kept.epoch,
                age_s=kept.age_s,
                keep=(kept.ca_name, kept.serial),
            )

    def due(self) -> list[Watched]:
        """Entries still inside their window (expired ones are dropped)."""
        now = self._clock()
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.until <= now]:
                del self._entries[key]
            return list(self._entries.values())

    def __len__(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for e in self._entries.values() if e.until > now)


def sweep_late(
    watch: LateWatch,
    issuer: Issuer,
    fence: Fence | None,
    *,
    name: str,
    deadline: Callable[[], float],
    is_retryable: Callable[[BaseException], bool],
    down: set[str] | None = None,
) -> LateReport:
    """Search every watched key once; revoke what turned up. Keys stay watched.

    ``down``: CAs that failed earlier in the caller's pass, joined by any that
    fails here (:func:`connector.agent.reconcile.revoke_orphans`).

    A key stays watched after a certificate for it was revoked: the same request
    may have been sent more than once (retries), each copy possibly late.
    ``fence`` None: a standby's sweep, which needs no lease (see above).
    """
    report = LateReport()
    entries = watch.due()
    report.searched = len(entries)
    down = set() if down is None else down
    found, _ = search_keys(issuer, [e.public_key_pem for e in entries], is_retryable)
    for entry, held in zip(entries, found, strict=True):
        if held is None:
            report.blind += 1
            continue  # cannot tell now; the next sweep asks again
        revoked, deferred = revoke_orphans(
            issuer,
            fence,
            name,
            plan_late(entry, held),
            deadline,
            is_retryable,
            late=True,
            down=down,
        )
        report.revoked.extend(revoked)
        report.deferred.extend(deferred)
    return report


class LateSweeps:
    """Sweeps of one :class:`LateWatch`, never two at once (the module docstring)."""

    def __init__(
        self,
        watch: LateWatch,
        issuer: Issuer,
        *,
        name: str,
        deadline: Callable[[], float],
        is_retryable: Callable[[BaseException], bool],
        on_report: Callable[[LateReport], None],
    ) -> None:
        self._sweep = partial(
            sweep_late, watch, issuer, name=name, deadline=deadline, is_retryable=is_retryable
        )
        self._on_report = on_report
        self._busy = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pfxha-late")

    def now(self, fence: Fence, down: set[str] | None = None) -> LateReport | None:
        """Sweep on the caller's thread, fenced; None when a background sweep still runs.

        ``down``: see :func:`sweep_late`."""
        if not self._busy.acquire(blocking=False):
            return None
        try:
            report = self._sweep(fence, down=down)
        finally:
            self._busy.release()
        self._on_report(report)
        return report

    def in_background(self) -> bool:
        """Start an unfenced sweep on the sweeping thread; False when one still runs."""
        if not self._busy.acquire(blocking=False):
            return False
        try:
            self._pool.submit(self._run_unfenced)
        except BaseException:
            self._busy.release()
            raise
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run_unfenced(self) -> None:
        try:
            report = self._sweep(None)
        except Exception:
            log.exception("late sweep failed; the next one asks again")
            return
        finally:
            self._busy.release()
        self._on_report(report)
