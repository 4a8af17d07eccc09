"""Work a leader left half-done under its *current* epoch, and how it is settled.

Reconciliation covers intents of older epochs. But a leader can also be
interrupted and keep its epoch: the service is briefly unreachable, or the
lease is not fresh for a moment and then is again. A request it polled,
recorded an intent for, or even got a certificate for would then sit in
flight at the service (never offered again) until some later leader
reconciled it. The issuing workers note such requests here; the next sweep
of the same epoch finishes them::

    work = DanglingWork()
    work.add(Dangling("r1", epoch=7, public_key_pem=pem, upload=None))
    left = settle(work.take(epoch=7), ctx)     # retried upload, or revoke + requeue
    left = settle(items, ctx, watch=late_watch)  # requeued keys watched for late certificates

Entries of an older epoch are dropped: their intents are older-epoch intents,
which :func:`connector.agent.reconcile.reconcile` handles.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connector.agent.events import Event, emit
from connector.agent.reconcile import plan_orphans
from connector.service_client import BadRequest, ServiceUnavailable, UploadItem

__all__ = ["Dangling", "DanglingWork", "settle"]

if TYPE_CHECKING:
    from connector.agent.issuance import IssueContext
    from connector.agent.late import LateWatch

log = logging.getLogger("pfxha.connector.dangling")


@dataclass(frozen=True)
class Dangling:
    request_id: str
    epoch: int
    # The key of an intent that may have been recorded (None: no intent sent).
    public_key_pem: str | None = None
    # A sealed PFX whose upload did not get an answer (the same call, sent again).
    upload: UploadItem | None = None


class DanglingWork:
    """A thread-safe list the issuing workers append to and the sweep drains."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Dangling] = []

    def add(self, item: Dangling) -> None:
        with self._lock:
            self._items.append(item)

    def extend(self, items: list[Dangling]) -> None:
        with self._lock:
            self._items.extend(items)

    def take(self, epoch: int) -> list[Dangling]:
        """Entries of ``epoch``; older ones are dropped (reconciliation owns them)."""
        with self._lock:
            items, self._items = self._items, []
        return [item for item in items if item.epoch == epoch]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def settle(
    items: list[Dangling],
    ctx: IssueContext,
    watch: LateWatch | None = None,
    down: set[str] | None = None,
) -> list[Dangling]:
    """Finish each entry with ``ctx`` (an IssueContext); return those still open.

    An entry with an intent that is requeued goes into ``watch``: its sign
    request may still reach a CA (:mod:`connector.agent.late`).

    :class:`ServiceUnavailable` puts this and every later entry back and
    propagates (the executor backs off); LeaseLost and 409 propagate likewise.
    """
    left: list[Dangling] = []
    # CAs a revocation failed at in this pass (``down``, shared with the caller's other
    # steps): later entries for them wait for the next sweep rather than call again (a
    # hung CA held the loop a call's deadline each).
    down = set() if down is None else down
    for index, item in enumerate(items):
        try:
            if not _settle_one(item, ctx, down):
                left.append(item)
            elif watch is not None and item.upload is None and item.public_key_pem is not None:
                watch.add(item.request_id, item.public_key_pem, epoch=item.epoch)
        except BaseException:
            ctx.dangling.extend([*left, *items[index:]])
            raise
    return left


def _revoke_or_defer(ctx: IssueContext, serial: int, ca_name: str, down: set[str]) -> bool:
    """Revoke as superseded; False (the entry waits) when ``ca_name`` is unavailable now
    or already failed in this pass (``down``, which a failure here joins)."""
    if ca_name in down:
        return False
    try:
        ctx.issuer.revoke(serial, ca_name, "superseded", ctx.deadline())
    except Exception as exc:
        if not ctx.is_retryable(exc):
            raise
        down.add(ca_name)
        return False
    return True


def _settle_one(item: Dangling, ctx: IssueContext, down: set[str]) -> bool:
    """True when the entry is done with; ``down``: see :func:`_revoke_or_defer`."""
    if item.upload is not None:
        upload = item.upload
        try:
            ctx.upload_alone(upload)
        except BadRequest as exc:
            # The service will not take it (another result, or no intent): never
            # deliverable, so it must not stay valid.
            if not _revoke_or_defer(ctx, upload.serial, upload.ca_name, down):
                return False
            emit(
                log,
                Event.UNDELIVERABLE_REVOKED,
                request_id=item.request_id,
                serial=upload.serial,
                ca=upload.ca_name,
                why=exc.reason,
                connector=ctx.name,
                epoch=item.epoch,
            )
            return True
        emit(
            log,
            Event.PFX_UPLOADED,
            request_id=item.request_id,
            serial=upload.serial,
            ca=upload.ca_name,
            connector=ctx.name,
            epoch=item.epoch,
            retried=True,
        )
        return True
    if item.public_key_pem is not None:
        public_key = load_pem_public_key(item.public_key_pem.encode())
        try:
            found = ctx.issuer.find(public_key)
        except Exception as exc:
            if not ctx.is_retryable(exc):
                raise
            # A certdb that cannot be searched: keep it (in flight), try next sweep.
            emit(log, Event.RECONCILE_BLOCKED, request_id=item.request_id, error=str(exc))
            return False
        for orphan in plan_orphans(item.request_id, item.epoch, found):
            ctx.fence.epoch()
            if not _revoke_or_defer(ctx, orphan.serial, orphan.ca_name, down):
                return False
            emit(
                log,
                Event.ORPHAN_REVOKED,
                request_id=item.request_id,
                serial=orphan.serial,
                ca=orphan.ca_name,
                reason="superseded",
                own_epoch=True,
                connector=ctx.name,
                epoch=ctx.fence.expected_epoch,
            )
    try:
        ctx.service.fail_request(
            ctx.name,
            ctx.fence.epoch(),
            item.request_id,
            "interrupted before delivery; issued anew",
            True,
        )
    except BadRequest:
        pass  # already finished one way or another: nothing left to do
    except ServiceUnavailable:
        raise
    emit(log, Event.REQUEST_DEFERRED, request_id=item.request_id, reason="interrupted; requeued")
    return True
