"""Takeover reconciliation: no orphan certificate survives a deposed leader.

A leader records its intent (request, epoch, public key) at the service before
it calls a CA. If it dies or is fenced between the CA call and the upload, the
CA may hold a certificate nobody will ever deliver. Before a new leader takes
new work it asks the service for intents of older epochs, asks the CAs what
they issued for each intent's public key, and revokes every such certificate
(reason ``superseded``); the request is then issued anew under the new epoch::

    report = reconcile(service, issuer, fence, name="c2", deadline=lambda: now() + 5)
    report.complete      # False if some CA or certdb was unreachable: try again soon
    report.waiting       # intents whose CAs could not be searched: still in flight

Every CA and service call passes :class:`~connector.agent.ports.Fence` first.

When the CAs cannot say what they issued for an intent's key (a certdb that
does not answer, refuses our credentials, or is not configured), the intent
is left in flight at the service: it is not requeued, so the request is not
issued anew while an orphan may be valid, and the next sweep tries again.
The other intents are settled, and new requests (which have no earlier
intent) are still served: one blind CA does not stop the connector, but it
is never silent (an error line per intent, the report, health and metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connector.agent.events import Event, emit
from connector.agent.ports import Fence, Issuer

__all__ = ["OrphanRevocation", "ReconcileReport", "plan_orphans", "reconcile"]

log = logging.getLogger("pfxha.connector.reconcile")

SUPERSEDED = "superseded"


@dataclass(frozen=True)
class OrphanRevocation:
    request_id: str
    intent_epoch: int
    serial: int
    ca_name: str


@dataclass
class ReconcileReport:
    intents: int = 0
    orphans_revoked: list[OrphanRevocation] = field(default_factory=list)
    # Orphans whose CA could not be reached: revoked on a later sweep.
    orphans_deferred: list[OrphanRevocation] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    cancelled_failed: list[str] = field(default_factory=list)
    # Intents whose key the CAs could not be searched for: left in flight.
    waiting: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.orphans_deferred and not self.waiting


def _is_revoked(cert: Any) -> bool:
    revoked = getattr(cert, "revoked", False)
    if callable(revoked):
        revoked = revoked()
    return bool(revoked) or getattr(cert, "status", "good") == "revoked"


def plan_orphans(
    request_id: str, intent_epoch: int, found: Sequence[Any]
) -> list[OrphanRevocation]:
    """Pure: which certificates found for a stale intent must be revoked.

    Every unrevoked one: a stale intent's certificate was never delivered (its
    upload never arrived), so none of them may stay valid.
    """
    return [
        OrphanRevocation(request_id, intent_epoch, int(cert.serial), str(cert.ca_name))
        for cert in found
        if not _is_revoked(cert)
    ]


def reconcile(
    service: Any,
    issuer: Issuer,
    fence: Fence,
    *,
    name: str,
    deadline: Callable[[], float],
    is_retryable: Callable[[BaseException], bool],
) -> ReconcileReport:
    """Revoke what older epochs' in-flight intents left at the CAs, then requeue the requests.

    A request whose orphan sits at an unreachable CA stays in flight (so it is
    not issued anew while the orphan is valid) and is retried on the next sweep.
    """
    report = ReconcileReport()
    intents = service.inflight_intents(name, fence.epoch())
    report.intents = len(intents)
    if intents:
        emit(log, Event.RECONCILE_STARTED, intents=len(intents), epoch=fence.expected_epoch)
    # One search for every intent: each CA's certdb is read once per sweep, not
    # once per intent (a takeover after a crash has a batch of them in flight,
    # and each read is a connection and the whole table).
    keys = [load_pem_public_key(intent.public_key_pem.encode()) for intent in intents]
    try:
        found_per_intent = list(issuer.find_many(keys)) if intents else []
    except Exception as exc:
        if not is_retryable(exc):
            raise
        # Cannot tell what was issued: every intent stays in flight, untouched.
        for intent in intents:
            report.waiting.append(intent.request_id)
            emit(
                log,
                Event.RECONCILE_BLOCKED,
                request_id=intent.request_id,
                intent_epoch=intent.epoch,
                error=str(exc),
            )
        found_per_intent = []
        intents = []
    for intent, found in zip(intents, found_per_intent, strict=True):
        orphans = plan_orphans(intent.request_id, intent.epoch, found)
        deferred = False
        for orphan in orphans:
            emit(
                log,
                Event.ORPHAN_FOUND,
                request_id=orphan.request_id,
                intent_epoch=orphan.intent_epoch,
                serial=orphan.serial,
                ca=orphan.ca_name,
            )
            fence.epoch()
            try:
                issuer.revoke(orphan.serial, orphan.ca_name, SUPERSEDED, deadline())
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                deferred = True
                report.orphans_deferred.append(orphan)
                emit(
                    log,
                    Event.REVOCATION_DEFERRED,
                    serial=orphan.serial,
                    ca=orphan.ca_name,
                    error=str(exc),
                )
                continue
            report.orphans_revoked.append(orphan)
            emit(
                log,
                Event.ORPHAN_REVOKED,
                request_id=orphan.request_id,
                serial=orphan.serial,
                ca=orphan.ca_name,
                reason=SUPERSEDED,
            )
        if deferred:
            # The intent stays in flight at the service, so the request is not
            # issued anew while its orphan is valid; the next sweep retries.
            continue
        # Back to pending (or failed, if it was cancelled meanwhile): issued anew.
        service.fail_request(
            name,
            fence.epoch(),
            intent.request_id,
            f"reconciled after epoch {intent.epoch}: {len(orphans)} orphan(s) revoked",
            not intent.cancelled,
        )
        if intent.cancelled:
            report.cancelled_failed.append(intent.request_id)
        else:
            report.requeued.append(intent.request_id)
    emit(
        log,
        Event.RECONCILE_DONE,
        intents=report.intents,
        orphans_revoked=len(report.orphans_revoked),
        orphans_deferred=len(report.orphans_deferred),
        requeued=len(report.requeued),
        waiting=len(report.waiting),
        epoch=fence.expected_epoch,
    )
    return report
