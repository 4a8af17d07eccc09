"""Revocation tasks: polled by the loop, revoked at the CAs on a thread of their own.

    revocations = Revocations(deps, state, fence, on_revoked=..., on_progress=loop.wake)
    revocations.poll(decision)     # returns at once; the pass runs beside the loop
    revocations.none_waiting(t)    # a request poll sent at t said none wait: not due yet
    revocations.close()

A CA that is down (or slow) for a revocation must not hold up issuance at the
other CAs, so revoking runs on one thread of its own, fenced for the epoch of
the poll. Tasks for a CA whose circuit is open are put off without a call
(they stay queued at the service and come back with the next poll); a CA that
fails once in a pass is not called again in that pass. Each revocation is
confirmed at the service right after the CA said so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from functools import partial

from connector.agent.decide import Decision
from connector.agent.events import Event, emit
from connector.agent.ports import Fence, LeaseLost
from connector.agent.state import AgentState, ExecutorDeps
from connector.service_client import (
    ConnectorRevokedError,
    RevocationTask,
    ServiceUnavailable,
    StaleEpochError,
)

__all__ = ["Revocations"]

log = logging.getLogger("pfxha.connector.executor")


class Revocations:
    """The revoking half of the executor: one pass at a time, in the background."""

    def __init__(
        self,
        deps: ExecutorDeps,
        state: AgentState,
        fence: Fence,
        *,
        on_revoked: Callable[[str, ConnectorRevokedError], None],
        on_progress: Callable[[], None],
    ) -> None:
        self.deps = deps
        self.state = state
        self.fence = fence
        self._on_revoked = on_revoked
        self._on_progress = on_progress
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pfxha-revoke")
        self._running: Future[int] | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def poll(self, decision: Decision) -> None:
        """Poll revocations and hand them to the revoking thread; return at once.

        Tasks for a CA whose circuit is open are put off without a call (they
        stay queued at the service and come back with the next poll); the
        others are revoked in the background, fenced for this epoch, while the
        loop goes on to issue.
        """
        deps = self.deps
        if self._running is not None and not self._running.done():
            # The last pass is still at work: its tasks would come back again.
            self.state.last_revocation_poll_at = deps.clock()
            return
        tasks = deps.service.poll_revocations(deps.name, self.fence.epoch(), deps.batch_size)
        self.state.last_revocation_poll_at = deps.clock()
        self.state.revocations_backlog = False
        if deps.metrics is not None:
            deps.metrics.set_pending("revoke", len(tasks))
        if not tasks:
            return
        assert decision.epoch is not None
        emit(log, Event.REVOCATIONS_RECEIVED, count=len(tasks), epoch=decision.epoch)
        states = self._ca_states()
        ready = []
        put_off: Counter[str] = Counter()
        for task in tasks:
            if states.get(task.ca_name) == "open":
                put_off[task.ca_name] += 1
                self.deps.count("revoke", "deferred", "-", task.ca_name)
            else:
                ready.append(task)
        for ca, count in put_off.items():
            # One line per CA and poll, not per task: a long outage would flood the log.
            emit(
                log,
                Event.REVOCATION_DEFERRED,
                ca=ca,
                count=count,
                error="circuit open",
                connector=deps.name,
                epoch=decision.epoch,
            )
        if not ready:
            return
        fence = Fence.armed(deps.lease, decision.epoch)
        future = self._pool.submit(self._revoke_tasks, fence, ready)
        future.add_done_callback(partial(self._revoked, decision.epoch, len(tasks)))
        self._running = future

    def none_waiting(self, asked_at: float) -> None:
        """A request poll sent at ``asked_at`` said no revocation waits: that answers
        what a revocation poll then would have, so the next one is due an interval
        after it (a saturated leader polls requests several times a second and makes
        no separate revocation call; each is a round trip and 1.7 to 2.2 ms of its CPU
        on a saturated flow-bench leader).
        A task stays pending until its revocation is confirmed, so 0 also means the
        last pass left nothing behind.
        """
        last = self.state.last_revocation_poll_at
        if last is None or asked_at > last:
            self.state.last_revocation_poll_at = asked_at

    def _ca_states(self) -> Mapping[str, str]:
        try:
            return {name: str(state) for name, state in self.deps.issuer.ca_states().items()}
        except Exception:  # a router that cannot say: try the calls
            return {}

    def _defer_revocation(
        self, task: RevocationTask, error: str, *, retryable: bool, epoch: int | None
    ) -> None:
        event = Event.REVOCATION_DEFERRED if retryable else Event.REVOCATION_FAILED
        emit(
            log,
            event,
            revocation_id=task.id,
            serial=task.serial,
            ca=task.ca_name,
            error=error,
            connector=self.deps.name,
            epoch=epoch,
        )
        self.deps.count("revoke", "deferred" if retryable else "failed", "-", task.ca_name)

    def _revoke_tasks(self, fence: Fence, tasks: list[RevocationTask]) -> int:
        """Revoke at each issuing CA and confirm (the revoking thread). Returns how many."""
        deps = self.deps
        unreachable: set[str] = set()
        done = 0
        for task in tasks:
            if task.ca_name in unreachable:
                continue  # stays queued at the service; do not wait on a dead CA twice
            started = deps.clock()
            fence.epoch()
            try:
                deps.issuer.revoke(task.serial, task.ca_name, task.reason, deps.ca_deadline())
            except Exception as exc:
                if not isinstance(exc, deps.ca_errors):
                    raise
                retryable = deps.is_retryable(exc)
                if retryable:
                    unreachable.add(task.ca_name)
                self._defer_revocation(
                    task, str(exc), retryable=retryable, epoch=fence.expected_epoch
                )
                continue
            emit(
                log,
                Event.CERT_REVOKED,
                revocation_id=task.id,
                serial=task.serial,
                ca=task.ca_name,
                reason=task.reason,
                connector=deps.name,
                epoch=fence.expected_epoch,
            )
            deps.service.confirm_revocation(deps.name, fence.epoch(), task.id)
            emit(
                log,
                Event.REVOCATION_CONFIRMED,
                revocation_id=task.id,
                request_id=task.request_id,
                connector=deps.name,
                epoch=fence.expected_epoch,
            )
            done += 1
            self.deps.count("revoke", "revoked", "-", task.ca_name)
            if deps.metrics is not None:
                deps.metrics.observe_revocation(deps.clock() - started, ca=task.ca_name)
        return done

    def _revoked(self, epoch: int, polled: int, future: Future[int]) -> None:
        """The revoking thread finished a pass (called on that thread)."""
        try:
            done = future.result()
        except StaleEpochError as exc:
            self.state.rejected_epoch = epoch
            emit(log, Event.STALE_EPOCH, epoch=epoch, reason=exc.reason, action="revoke")
        except ConnectorRevokedError as exc:
            self._on_revoked("revoke", exc)
        except LeaseLost as exc:
            emit(log, Event.LEASE_NOT_FRESH, action="revoke", reason=str(exc))
        except ServiceUnavailable as exc:
            self.state.service_retry_at = self.deps.clock() + self.deps.backoff_s
            emit(log, Event.SERVICE_UNAVAILABLE, action="revoke", error=exc.reason)
        except CancelledError:
            pass
        except Exception:
            log.exception("revoking thread failed")
        else:
            # A full batch with progress means more may be waiting: poll again soon.
            self.state.revocations_backlog = polled >= self.deps.batch_size and done > 0
        self._on_progress()
