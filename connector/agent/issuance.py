"""One certificate request, from key to uploaded PFX, each side effect fenced.

    outcome = issue_one(ctx, request)      # Outcome.DELIVERED, DEFERRED, FAILED, FENCED

The order is the safety argument:

1. key and CSR (local, no side effect; the key may come from the pool);
2. fresh epoch -> record the intent (request, epoch, public key) at the service;
3. fresh epoch -> ask the template's CAs (failover and retries bounded by the
   deadline, itself bounded by the lease);
4. pack key + certificate + chain into a PFX, seal it to the KRA certificate;
5. fresh epoch -> upload.

If the CA call fails after the intent, the CA may still have issued (a lost
answer): we look the key up at the CAs and deliver what we find rather than
issue twice. If the CAs cannot be searched (a certdb down), the request is
held: noted as dangling work, in flight at the service, and settled (found
and delivered, or revoked and requeued) once the search answers; handing it
back blind could leave a valid orphan next to its replacement. If the upload
is refused (409 or 4xx) the certificate can never be delivered, so we revoke
it ourselves (``superseded``) before giving up: at most one unrevoked
certificate per request, and it is the delivered one. If
we are interrupted (lease not fresh, service silent) the request is noted as
dangling work (:mod:`connector.agent.dangling`) and finished by the next sweep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connector.agent.dangling import Dangling, DanglingWork
from connector.agent.events import Event, emit
from connector.agent.grouping import CallGroup, Member
from connector.agent.late import LateWatch
from connector.agent.ports import Fence, IssuanceService, Issued, Issuer, LeaseLost, Pki
from connector.agent.stages import StageClock
from connector.pki import PrivateKey
from connector.service_client import (
    BadRequest,
    CertificateRequest,
    ServiceUnavailable,
    StaleEpochError,
    UploadItem,
)

__all__ = ["IssueContext", "Outcome", "issue_one"]

log = logging.getLogger("pfxha.connector.issuance")

_UNPROCESSABLE = 422

P = TypeVar("P")


class Outcome(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # CA unavailable: handed back to the service, retried later
    FAILED = "failed"  # permanent: the service shows the reason
    FENCED = "fenced"  # lease lost or 409: nothing more done
    STALLED = "stalled"  # the service did not answer: noted as dangling work
    HELD = "held"  # the CA may have issued and cannot be searched now: dangling work


@dataclass(frozen=True)
class IssueContext:
    name: str
    service: IssuanceService
    issuer: Issuer
    pki: Pki
    fence: Fence
    # Absolute deadline (monotonic) for one CA call, bounded by the lease.
    deadline: Callable[[], float]
    # CA exceptions (connector.ca.CAError) and which of them are worth retrying.
    ca_errors: tuple[type[BaseException], ...]
    is_retryable: Callable[[BaseException], bool]
    dangling: DanglingWork
    on_result: Callable[[CertificateRequest, Outcome, str, float], None] = lambda *_: None
    clock: Callable[[], float] = time.monotonic
    # Requests polled together share their intents and results calls
    # (:mod:`connector.agent.grouping`); None: each request calls alone.
    intents: CallGroup[str] | None = None
    results: CallGroup[UploadItem] | None = None
    # Keys whose certificate may still arrive at a CA (connector/agent/late.py).
    late: LateWatch | None = None
    # Thread CPU per stage of each request (connector/agent/stages.py): the metrics.
    stage_cpu: Callable[[str, float], None] = lambda _stage, _seconds: None
    # A CA answered an issue (its name): real work that spares a reach probe.
    ca_answered: Callable[[str], None] = lambda _ca: None

    def upload_alone(self, item: UploadItem) -> None:
        """``item`` in a call of its own, under the fresh epoch (a result not grouped with
        its batch's, or one sent again after its call got no answer)."""
        self.service.upload_result(
            self.name,
            self.fence.epoch(),
            item.request_id,
            item.envelope,
            item.serial,
            item.ca_name,
            uncertain=item.uncertain,
        )


def _public_pem(key: PrivateKey) -> str:
    pem: bytes = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return pem.decode("ascii")


@dataclass
class _Progress:
    """How far one request got: decides what is left dangling if we are interrupted."""

    epoch: int | None = None
    public_key_pem: str | None = None
    upload: UploadItem | None = None

    def dangling(self, request_id: str) -> Dangling | None:
        if self.epoch is None:
            return None
        return Dangling(request_id, self.epoch, self.public_key_pem, self.upload)


def issue_one(ctx: IssueContext, request: CertificateRequest) -> Outcome:
    """Process one request; only a 409 propagates (after tripping the fence)."""
    started = ctx.clock()
    progress = _Progress(epoch=ctx.fence.expected_epoch)
    ca = "-"
    stages = StageClock(ctx.stage_cpu)
    try:
        with _joined(ctx.intents) as intents, _joined(ctx.results) as results:
            outcome, ca = _issue(ctx, request, progress, stages, intents, results)
    except LeaseLost as exc:
        emit(log, Event.LEASE_NOT_FRESH, request_id=request.id, reason=str(exc))
        _note_dangling(ctx, request, progress)
        outcome = Outcome.FENCED
    except ServiceUnavailable as exc:
        emit(log, Event.SERVICE_UNAVAILABLE, request_id=request.id, error=exc.reason)
        _note_dangling(ctx, request, progress)
        outcome = Outcome.STALLED
    except StaleEpochError as exc:
        ctx.fence.trip()
        emit(log, Event.STALE_EPOCH, request_id=request.id, reason=exc.reason)
        raise
    finally:
        stages.close()
    ctx.on_result(request, outcome, ca, ctx.clock() - started)
    return outcome


def _note_dangling(ctx: IssueContext, request: CertificateRequest, progress: _Progress) -> None:
    item = progress.dangling(request.id)
    if item is not None:
        ctx.dangling.add(item)


@contextmanager
def _joined(group: CallGroup[P] | None) -> Iterator[Member[P] | None]:
    if group is None:
        yield None
        return
    with group.member() as member:
        yield member


def _record_intent(
    ctx: IssueContext, member: Member[str] | None, epoch: int, request_id: str, pem: str
) -> None:
    if member is None:
        ctx.service.record_intent(ctx.name, epoch, request_id, pem)
    else:
        member.call(request_id, pem)  # sent with the batch's, under a fresh epoch


def _upload(ctx: IssueContext, member: Member[UploadItem] | None, item: UploadItem) -> None:
    if member is None:
        ctx.upload_alone(item)
    else:
        member.call(item.request_id, item)


def _issue(
    ctx: IssueContext,
    request: CertificateRequest,
    progress: _Progress,
    stages: StageClock,
    intents: Member[str] | None = None,
    results: Member[UploadItem] | None = None,
) -> tuple[Outcome, str]:
    template = request.profile.template
    try:
        with stages("key"):
            key = ctx.pki.new_key(request.profile.key_type)
        with stages("csr"):
            csr = ctx.pki.build_csr(request, key)
    except ValueError as exc:
        # A key type or template the connector refuses: no retry will help.
        return _refuse(ctx, request, f"profile refused: {exc}"), "-"
    public_pem = _public_pem(key)

    epoch = ctx.fence.epoch()
    progress.public_key_pem = public_pem  # from here on an intent may exist
    with stages("intent"):
        _record_intent(ctx, intents, epoch, request.id, public_pem)
    emit(log, Event.INTENT_RECORDED, request_id=request.id, epoch=epoch)

    ctx.fence.epoch()
    try:
        with stages("ca"):
            issued = ctx.issuer.issue(csr, template, request.id, ctx.deadline())
        ctx.ca_answered(issued.ca_name)
    except Exception as exc:
        if not isinstance(exc, ctx.ca_errors):
            raise
        retryable = ctx.is_retryable(exc)
        try:
            found = _find_unrevoked(ctx, key)
        except _CannotSearchError as blind:
            emit(log, Event.RECONCILE_BLOCKED, request_id=request.id, error=str(blind))
            _note_dangling(ctx, request, progress)
            return Outcome.HELD, "-"
        if found is None:
            if getattr(exc, "ambiguous", False):
                # A CA got the request and its answer was lost: it may still commit the
                # certificate after our search. A new key now would leave that one an
                # orphan; the same-epoch sweep searches again, revokes what it finds,
                # and only then offers the request again.
                emit(log, Event.CA_ANSWER_LOST, request_id=request.id, error=str(exc))
                _note_dangling(ctx, request, progress)
                return Outcome.HELD, "-"
            return _hand_back(ctx, request, exc, retryable), "-"
        # The CA issued although its answer was lost: deliver that one.
        issued = found
    emit(
        log,
        Event.CERT_ISSUED,
        request_id=request.id,
        serial=issued.serial,
        ca=issued.ca_name,
        template=template,
        connector=ctx.name,
        epoch=epoch,
    )
    if issued.uncertain:
        # An earlier attempt timed out after it was sent: that CA may have issued too.
        _revoke_extras(ctx, request, key, issued)
    try:
        with stages("pfx"):
            pfx = ctx.pki.pack_pfx(key, issued.certificate, issued.chain)
        with stages("seal"):
            envelope = ctx.pki.seal(pfx)
    except ValueError as exc:
        _revoke_undeliverable(ctx, request, issued, f"cannot pack the PFX: {exc}")
        return _refuse(ctx, request, f"cannot pack the PFX: {exc}"), issued.ca_name
    del key, pfx  # the PFX inside the envelope is the only copy that leaves this function
    uncertain = bool(issued.uncertain)  # a CA where an earlier attempt may have signed too
    upload = UploadItem(request.id, envelope, issued.serial, issued.ca_name, uncertain)
    progress.upload = upload  # sent again by the sweep if this call gets no answer

    try:
        with stages("upload"):
            _upload(ctx, results, upload)
    except StaleEpochError:
        _revoke_undeliverable(ctx, request, issued, "service refused our epoch (409)")
        raise
    except BadRequest as exc:
        _revoke_undeliverable(ctx, request, issued, exc.reason)
        if exc.status == _UNPROCESSABLE:
            # The service refused this certificate itself (it does not match the
            # request): say so, rather than leave the request in flight.
            return _refuse(ctx, request, f"result refused: {exc.reason}"), issued.ca_name
        return Outcome.FAILED, issued.ca_name
    emit(
        log,
        Event.PFX_UPLOADED,
        request_id=request.id,
        serial=issued.serial,
        ca=issued.ca_name,
        connector=ctx.name,
        epoch=ctx.fence.expected_epoch,
    )
    return Outcome.DELIVERED, issued.ca_name


class _CannotSearchError(Exception):
    """The CAs could not say what they issued for a key."""


def _find_unrevoked(ctx: IssueContext, key: PrivateKey) -> Issued | None:
    """The unrevoked certificate the CAs hold for ``key``; :class:`_CannotSearchError`."""
    try:
        found = [c for c in ctx.issuer.find(key.public_key()) if not c.revoked]
    except Exception as exc:  # "cannot tell" is never "nothing issued"
        if not ctx.is_retryable(exc):
            raise
        emit(log, Event.CA_UNAVAILABLE, during="find", error=str(exc))
        raise _CannotSearchError(str(exc)) from exc
    return found[0] if found else None


def _revoke_extras(
    ctx: IssueContext, request: CertificateRequest, key: PrivateKey, issued: Issued
) -> None:
    """Revoke every other certificate the CAs hold for this key: only one may stay valid.

    A CA whose answer was lost may record its certificate after this search (a
    one-round drill found two valid certificates for one request: the primary's
    connection dropped, the secondary signed, the primary's certificate turned up
    later), so the key is also watched for late ones, the delivered one kept.
    """
    if ctx.late is not None:
        ctx.late.add(
            request.id,
            _public_pem(key),
            epoch=ctx.fence.expected_epoch or 0,
            keep=(issued.ca_name, issued.serial),
        )
    try:
        found = ctx.issuer.find(key.public_key())
    except Exception as exc:
        emit(log, Event.CA_UNAVAILABLE, during="find", error=str(exc))
        return
    for cert in found:
        if cert.revoked or (cert.ca_name, cert.serial) == (
            issued.ca_name,
            issued.serial,
        ):
            continue
        ctx.fence.epoch()
        if not _revoke_or_defer(ctx, cert, ctx.deadline(), defer=ctx.is_retryable):
            continue
        emit(
            log,
            Event.ORPHAN_REVOKED,
            request_id=request.id,
            serial=cert.serial,
            ca=cert.ca_name,
            reason="superseded",
            duplicate_of=issued.serial,
            connector=ctx.name,
            epoch=ctx.fence.expected_epoch,
        )


def _revoke_or_defer(
    ctx: IssueContext, cert: Issued, deadline: float, *, defer: Callable[[BaseException], bool]
) -> bool:
    """Revoke ``cert`` as superseded; True when done. An error ``defer`` accepts is
    logged as a deferred revocation (False); any other propagates."""
    try:
        ctx.issuer.revoke(cert.serial, cert.ca_name, "superseded", deadline)
    except Exception as exc:
        if not defer(exc):
            raise
        emit(
            log,
            Event.REVOCATION_DEFERRED,
            serial=cert.serial,
            ca=cert.ca_name,
            error=str(exc),
            connector=ctx.name,
            epoch=ctx.fence.expected_epoch,
        )
        return False
    return True


def _refuse(ctx: IssueContext, request: CertificateRequest, reason: str) -> Outcome:
    ctx.service.fail_request(ctx.name, ctx.fence.epoch(), request.id, reason[:500], False)
    emit(log, Event.REQUEST_FAILED, request_id=request.id, reason=reason[:500])
    return Outcome.FAILED


def _hand_back(
    ctx: IssueContext, request: CertificateRequest, exc: BaseException, retryable: bool
) -> Outcome:
    reason = f"CA {'unavailable' if retryable else 'refused'}: {exc}"[:500]
    ctx.service.fail_request(ctx.name, ctx.fence.epoch(), request.id, reason, retryable)
    event = Event.REQUEST_DEFERRED if retryable else Event.REQUEST_FAILED
    emit(
        log,
        event,
        request_id=request.id,
        reason=reason,
        connector=ctx.name,
        epoch=ctx.fence.expected_epoch,
    )
    return Outcome.DEFERRED if retryable else Outcome.FAILED


def _revoke_undeliverable(
    ctx: IssueContext, request: CertificateRequest, issued: Issued, why: str
) -> None:
    """Undo our own certificate that can never be delivered (no leadership needed for that)."""
    # Whatever the error: the intent stays at the service, and the next leader's
    # reconciliation revokes the certificate.
    if not _revoke_or_defer(ctx, issued, ctx.clock() + 2.0, defer=lambda _: True):
        return
    emit(
        log,
        Event.UNDELIVERABLE_REVOKED,
        request_id=request.id,
        serial=issued.serial,
        ca=issued.ca_name,
        why=why,
        connector=ctx.name,
        epoch=ctx.fence.expected_epoch,
    )
