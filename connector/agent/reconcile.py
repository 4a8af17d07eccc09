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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connector.agent.events import Event, emit
from connector.agent.ports import Fence, Issued, Issuer, ReconcileService
from connector.service_client import Intent

__all__ = [
    "OrphanRevocation",
    "ReconcileReport",
    "plan_orphans",
    "reconcile",
    "revoke_orphans",
    "search_keys",
]

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
    # (request id, public key PEM, intent epoch) of every intent settled here: a
    # sign request for that key may still be on its way (:mod:`connector.agent.late`).
    given_up: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.orphans_deferred and not self.waiting


def plan_orphans(
    request_id: str, intent_epoch: int, found: Sequence[Issued]
) -> list[OrphanRevocation]:
    """Pure: which certificates found for a stale intent must be revoked.

    Every unrevoked one: a stale intent's certificate was never delivered (its
    upload never arrived), so none of them may stay valid.
    """
    return [
        OrphanRevocation(request_id, intent_epoch, cert.serial, cert.ca_name)
        for cert in found
        if not cert.revoked
    ]


# Intents settled side by side (a CA call per orphan, a service call each): a
# takeover after a cut finds one per request the old leader had in hand, and
# new work waits for them.
_WORKERS = 4


def search_keys(
    issuer: Issuer, pems: Sequence[str], is_retryable: Callable[[BaseException], bool]
) -> tuple[list[Sequence[Issued] | None], str | None]:
    """Per public key PEM, what the CAs hold for it (None: could not tell), and why not.

    One read per CA for every key (``find_many``): a search per intent read and
    parsed a whole certdb each time. A CA that cannot be searched leaves every
    key of this sweep unknown (one connect timeout, not one per intent).
    """
    keys = [load_pem_public_key(pem.encode()) for pem in pems]
    if not keys:
        return [], None
    try:
        return list(issuer.find_many(keys)), None
    except Exception as exc:
        if not is_retryable(exc):
            raise
        return [None] * len(keys), str(exc)


def revoke_orphans(
    issuer: Issuer,
    fence: Fence | None,
    name: str,
    orphans: Sequence[OrphanRevocation],
    deadline: Callable[[], float],
    is_retryable: Callable[[BaseException], bool],
    *,
    late: bool = False,
    down: set[str] | None = None,
) -> tuple[list[OrphanRevocation], list[OrphanRevocation]]:
    """Revoke orphans (superseded): (revoked, deferred). Non-retryable errors propagate.

    ``down``: CAs a revocation failed at earlier in the caller's pass, joined by
    any that fails here; their orphans are deferred without a call (a hung CA
    answers each call only at its deadline, and the pass runs on the agent's loop).

    ``late``: certificates that turned up after their request was settled
    (:mod:`connector.agent.late`); their events say so. ``fence`` None: no lease
    is checked (only for late certificates, which nobody can deliver).
    """
    if fence is None and not late:
        raise ValueError("only late certificates are revoked without a lease")
    epoch = fence.expected_epoch if fence is not None else None
    marked: dict[str, Any] = {"late": True} if late else {}
    revoked: list[OrphanRevocation] = []
    deferred: list[OrphanRevocation] = []
    for orphan in orphans:
        emit(
            log,
            Event.ORPHAN_FOUND,
            request_id=orphan.request_id,
            intent_epoch=orphan.intent_epoch,
            serial=orphan.serial,
            ca=orphan.ca_name,
            connector=name,
            epoch=epoch,
            **marked,
        )
        if fence is not None:
            fence.epoch()
        error = None
        if down is not None and orphan.ca_name in down:
            error = "the CA failed earlier in this pass"
        else:
            try:
                issuer.revoke(orphan.serial, orphan.ca_name, SUPERSEDED, deadline())
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                error = str(exc)
                if down is not None:
                    down.add(orphan.ca_name)
        if error is not None:
            deferred.append(orphan)
            emit(
                log,
                Event.REVOCATION_DEFERRED,
                serial=orphan.serial,
                ca=orphan.ca_name,
                error=error,
                connector=name,
                epoch=epoch,
            )
            continue
        revoked.append(orphan)
        emit(
            log,
            Event.ORPHAN_REVOKED,
            request_id=orphan.request_id,
            serial=orphan.serial,
            ca=orphan.ca_name,
            reason=SUPERSEDED,
            connector=name,
            epoch=epoch,
            **marked,
        )
    return revoked, deferred


def _settle_intent(
    service: ReconcileService,
    issuer: Issuer,
    fence: Fence,
    name: str,
    deadline: Callable[[], float],
    is_retryable: Callable[[BaseException], bool],
    down: set[str],
    intent: Intent,
    plan: Sequence[OrphanRevocation],
) -> tuple[Intent, list[OrphanRevocation], list[OrphanRevocation]]:
    """Revoke one intent's orphans, then hand its request back: (intent, revoked, deferred)."""
    revoked, deferred = revoke_orphans(issuer, fence, name, plan, deadline, is_retryable, down=down)
    if deferred:
        # The intent stays in flight at the service, so the request is not
        # issued anew while its orphan is valid; the next sweep retries.
        return intent, revoked, deferred
    # Back to pending (or failed, if it was cancelled meanwhile): issued anew.
    service.fail_request(
        name,
        fence.epoch(),
        intent.request_id,
        f"reconciled after epoch {intent.epoch}: {len(plan)} orphan(s) revoked",
        not intent.cancelled,
    )
    return intent, revoked, deferred


def reconcile(
    service: ReconcileService,
    issuer: Issuer,
    fence: Fence,
    *,
    name: str,
    deadline: Callable[[], float],
    is_retryable: Callable[[BaseException], bool],
    intents: Sequence[Any] | None = None,
    down: set[str] | None = None,
) -> ReconcileReport:
    """Revoke what older epochs' in-flight intents left at the CAs, then requeue the requests.

    ``intents``: listed already for this epoch (the registration's answer); None: asked here.
    ``down``: CAs that failed earlier in the caller's pass (see :func:`revoke_orphans`).

    A request whose orphan sits at an unreachable CA stays in flight (so it is
    not issued anew while the orphan is valid) and is retried on the next sweep.
    Intents are settled side by side; each request is handed back only after
    its own orphans are revoked.
    """
    report = ReconcileReport()
    if intents is None:
        intents = service.inflight_intents(name, fence.epoch())
    else:
        fence.epoch()  # the sweep's calls below are fenced; so is its start
    report.intents = len(intents)
    if intents:
        emit(log, Event.RECONCILE_STARTED, intents=len(intents), epoch=fence.expected_epoch)
    found, blind = search_keys(issuer, [i.public_key_pem for i in intents], is_retryable)
    plans: list[list[OrphanRevocation] | None] = []
    for intent, held in zip(intents, found, strict=True):
        if held is None:
            # Cannot tell what was issued: the intent stays in flight, untouched.
            report.waiting.append(intent.request_id)
            emit(
                log,
                Event.RECONCILE_BLOCKED,
                request_id=intent.request_id,
                intent_epoch=intent.epoch,
                error=blind,
            )
            plans.append(None)
        else:
            plans.append(plan_orphans(intent.request_id, intent.epoch, held))
    down = set() if down is None else down
    settle = partial(_settle_intent, service, issuer, fence, name, deadline, is_retryable, down)
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="pfxha-reconcile") as pool:
        futures = [
            pool.submit(settle, intent, plan) if plan is not None else None
            for intent, plan in zip(intents, plans, strict=True)
        ]
        outcomes = [future.result() for future in futures if future is not None]
    for intent, revoked, deferred in outcomes:
        report.orphans_revoked.extend(revoked)
        report.orphans_deferred.extend(deferred)
        if deferred:
            continue
        report.given_up.append((intent.request_id, intent.public_key_pem, intent.epoch))
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
