"""Polled batches: each request issued on a thread of its own, beside the loop.

    batches = Batches(deps, state, fence, hand=hand, dangling=dangling, late=late,
                      counts_lock=lock, on_revoked=..., on_progress=loop.wake)
    batches.take(epoch, polled.requests)   # returns at once; the batch runs in the background
    ctx = batches.context()                # the loop's fence: what a sweep settles work with
    batches.close()

Every request in hand has a thread (see :attr:`Hand.capacity
<connector.agent.hand.Hand.capacity>`): requests of a batch wait for each other
to share a call (:mod:`connector.agent.grouping`), so none may wait for a
thread. A batch is fenced for the epoch it was polled in, whatever the loop
does next. The hand is told when a request's key is made and when it
finishes; the loop is woken when room for a poll opens, or when a request ends
in anything but a delivery. The callbacks run on the issuing threads: what they
count is guarded by the executor's lock, handed in as ``counts_lock``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial

from connector.agent.dangling import DanglingWork
from connector.agent.events import Event, emit
from connector.agent.grouping import CallGroup
from connector.agent.hand import Hand
from connector.agent.issuance import IssueContext, Outcome, issue_one
from connector.agent.late import LateWatch
from connector.agent.ports import Fence
from connector.agent.state import AgentState, ExecutorDeps
from connector.pki import PrivateKey
from connector.service_client import (
    CertificateRequest,
    ConnectorRevokedError,
    StaleEpochError,
    UploadItem,
)

__all__ = ["Batches"]

log = logging.getLogger("pfxha.connector.executor")

# How long the first request of a batch to reach the intents (results) call
# waits for the others: they make their keys side by side, so they arrive
# close together; a CA retrying for one of them must not hold the rest long.
_INTENTS_WAIT_S = 0.5
_RESULTS_WAIT_S = 0.2


class Batches:
    """The issuing half of the executor: take a polled batch, issue it in the background."""

    def __init__(
        self,
        deps: ExecutorDeps,
        state: AgentState,
        fence: Fence,
        *,
        hand: Hand,
        dangling: DanglingWork,
        late: LateWatch,
        counts_lock: threading.Lock,
        on_revoked: Callable[[str, ConnectorRevokedError], None],
        on_progress: Callable[[], None],
    ) -> None:
        self.deps = deps
        self.state = state
        self.fence = fence
        self.hand = hand
        self.dangling = dangling
        self.late = late
        self._counts_lock = counts_lock
        self._on_revoked = on_revoked
        self._on_progress = on_progress
        # A thread for every request in hand (see Executor.issue_capacity): requests of a
        # batch wait for each other to share a call, so none may wait for a thread.
        self._pool = ThreadPoolExecutor(
            max_workers=max(deps.max_in_hand, 2 * deps.workers), thread_name_prefix="pfxha-issue"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def take(
        self, epoch: int, requests: list[CertificateRequest], *, group_results: bool = True
    ) -> None:
        """Issue a polled batch in the background (the issuing threads).

        ``group_results=False`` (a takeover's first batch): each certificate is uploaded
        as soon as it is packed, on a connection of its own (a standby keeps them warm),
        rather than waiting for the batch's slowest at the shared results call.
        """
        deps = self.deps
        if deps.metrics is not None:
            deps.metrics.mark_poll_success()
            deps.metrics.set_pending("issue", len(requests))
        if not requests:
            return
        emit(log, Event.BATCH_RECEIVED, count=len(requests), epoch=epoch)
        # A fence of its own: this batch belongs to this epoch, whatever the
        # loop does next (a re-election re-arms the loop's fence, not this one).
        fence = Fence.armed(self.deps.lease, epoch)
        ctx = self.context(fence)
        if len(requests) > 1:
            ctx = replace(
                ctx,
                intents=CallGroup[str](
                    len(requests),
                    lambda items: deps.service.record_intents(deps.name, fence.epoch(), items),
                    max_wait_s=_INTENTS_WAIT_S,
                ),
                results=CallGroup[UploadItem](
                    len(requests),
                    lambda items: deps.service.upload_results(
                        deps.name, fence.epoch(), [item for _, item in items]
                    ),
                    max_wait_s=_RESULTS_WAIT_S,
                )
                if group_results
                else None,
            )
        self.hand.took(len(requests))
        for request in requests:
            future = self._pool.submit(self._issue_counted, ctx, request)
            future.add_done_callback(partial(self._issued, epoch))

    def context(self, fence: Fence | None = None) -> IssueContext:
        """What issuing (and settling dangling work) needs; the loop's fence by default."""
        deps = self.deps
        return IssueContext(
            name=deps.name,
            service=deps.service,
            issuer=deps.issuer,
            pki=deps.pki,
            fence=fence or self.fence,
            deadline=self.deps.ca_deadline,
            ca_errors=deps.ca_errors,
            is_retryable=deps.is_retryable,
            dangling=self.dangling,
            on_result=self._on_result,
            clock=deps.clock,
            late=self.late,
            stage_cpu=(
                deps.metrics.observe_issue_cpu
                if deps.metrics is not None
                else lambda _stage, _seconds: None
            ),
            ca_answered=deps.on_ca_answer,
        )

    def _issue_counted(self, ctx: IssueContext, request: CertificateRequest) -> Outcome:
        """:func:`issue_one`, telling the hand when this request's key is made."""
        keyed = threading.Event()

        def new_key(key_type: str) -> PrivateKey:
            try:
                return ctx.pki.new_key(key_type)
            finally:
                self._keyed(keyed)

        try:
            return issue_one(replace(ctx, pki=replace(ctx.pki, new_key=new_key)), request)
        finally:
            self._keyed(keyed)  # a request that never got to its key leaves the stage too

    def _keyed(self, keyed: threading.Event) -> None:
        with self._counts_lock:
            if keyed.is_set():
                return
            keyed.set()
        if self.hand.keyed():
            self._on_progress()  # the key stage has room: the loop may poll again

    def _issued(self, epoch: int, future: Future[Outcome]) -> None:
        """A worker finished one request (called on that worker's thread)."""
        now = self.deps.clock()
        # A request that never ran never left the key stage.
        opened = self.hand.finished(keyed=not future.cancelled())
        outcome: Outcome | None = None
        try:
            outcome = future.result()
        except StaleEpochError:
            self.state.rejected_epoch = epoch
        except ConnectorRevokedError as exc:
            self._on_revoked("issue", exc)
        except CancelledError:
            pass
        except Exception:
            log.exception("issuing worker failed")
        else:
            if outcome is Outcome.STALLED:
                self.state.service_retry_at = now + self.deps.backoff_s
            elif outcome in (Outcome.DEFERRED, Outcome.HELD):
                self.state.ca_retry_at = now + self.deps.backoff_s
            elif outcome is Outcome.DELIVERED:
                self.state.ca_retry_at = None
        if opened or outcome is not Outcome.DELIVERED:
            # Anything but a delivery is news the next decision must see at once.
            self._on_progress()

    def _on_result(
        self, request: CertificateRequest, outcome: Outcome, ca: str, seconds: float
    ) -> None:
        with self._counts_lock:  # called from the issuing worker threads
            self.state.counts[outcome.value] += 1
        self.deps.count("issue", outcome.value, request.profile.template, ca)
        if outcome is Outcome.DELIVERED and self.deps.metrics is not None:
            self.deps.metrics.observe_issuance(seconds, ca=ca)
