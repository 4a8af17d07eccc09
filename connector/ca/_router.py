"""Failover across issuing CAs: ordered CAs per template, a breaker per CA, bounded retries.

    router = CARouter({"primary": ca1, "secondary": ca2},
                      {"user-auth": ["primary", "secondary"]})
    issued = router.issue(csr, "user-auth", "req-1", deadline=time.monotonic() + 5)
    router.revoke(issued.serial, issued.ca_name, "superseded", deadline=...)
    router.find(key.public_key())        # every CA's certdb, for reconciliation
    router.reconcile_states()            # {"primary": ReconcileState(..., ready=True, ...)}
    router.probe_certdbs()               # the same, after asking each certdb now
    router.ca_states()                   # {"primary": "open", "secondary": "closed"}

A CA whose cluster answers but is electing a new active node
(:class:`CAElectingError`), or that lost its answer to a request it got (an
ambiguous failure: a node killed mid-request), is waited for, not failed over
from, for its ``failover_patience_s`` (0 by default, CFSSL and OpenBao alike:
an electing cluster did not act on the request, so the next CA serves it at
once). Within a patience the request is not sent to the next CA. And a
request that a CA with ``hold_lost_answers`` (OpenBao) may have signed (its
answer lost) is never sent to another CA, patience or not: only that CA can
say whether it signed, so the caller holds the request until it can be
searched (a CFSSL CA is searched in its certdb, which outlives the CA: there
the walk goes on).

``issue`` walks the template's CAs in order within one attempt, skipping
those whose breaker is open, so the first request after the primary dies is
served by the secondary; the attempt repeats under the named ``issue`` retry
policy until the caller's deadline. Revocation goes only to the CA that
issued the certificate; while it is down the call fails as retryable
(:class:`CAUnavailableError`) and the caller keeps it queued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from connector.ca._breaker import CLOSED, CircuitBreaker
from connector.ca._errors import (
    CAAuthError,
    CACircuitOpenError,
    CAElectingError,
    CAError,
    CAPermanentError,
    CARequestRejectedError,
    CARetryableError,
    CAUnavailableError,
    NoCAAvailableError,
)
from connector.ca._reload import AuthMaterialError, ReloadOutcome
from connector.ca._retry import RETRY_POLICIES, RetryPolicy
from connector.ca._types import (
    CertStatus,
    IssuedCertificate,
    IssuingCA,
    ReconcileState,
    aki_of,
)

__all__ = ["CARouter"]

log = logging.getLogger("pfxha.connector.ca")


def _ski(certificate: x509.Certificate) -> str:
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return ""
    return ext.value.digest.hex()


class CARouter:
    def __init__(
        self,
        cas: Mapping[str, IssuingCA],
        templates: Mapping[str, Sequence[str]],
        *,
        call_timeout_s: float = 2.0,
        breaker_threshold: int = 2,
        breaker_reset_s: float = 5.0,
        policies: Mapping[str, RetryPolicy] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_state_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if not cas:
            raise ValueError("CARouter needs at least one CA")
        for template, names in templates.items():
            if not names:
                raise ValueError(f"template {template!r} lists no CA")
            unknown = [n for n in names if n not in cas]
            if unknown:
                raise ValueError(f"template {template!r} names unknown CA(s) {unknown}")
        if call_timeout_s <= 0:
            raise ValueError("call_timeout_s must be > 0")
        self.cas = dict(cas)
        self.templates = {t: tuple(names) for t, names in templates.items()}
        self.call_timeout_s = call_timeout_s
        self.policies = dict(policies if policies is not None else RETRY_POLICIES)
        self._clock = clock
        self._sleep = sleep
        self._on_state_change = on_state_change
        # CAs that alone can say whether they signed a request whose answer was lost.
        self.holds_lost = frozenset(
            name for name, ca in self.cas.items() if getattr(ca, "hold_lost_answers", False)
        )
        self.breakers = {
            name: CircuitBreaker(
                name,
                failure_threshold=breaker_threshold,
                reset_timeout=breaker_reset_s,
                patience_s=float(getattr(cas[name], "failover_patience_s", 0.0)),
                clock=clock,
                on_change=self._breaker_changed,
            )
            for name in self.cas
        }

    def _breaker_changed(self, name: str, old: str, new: str) -> None:
        level = logging.WARNING if new != CLOSED else logging.INFO
        log.log(
            level,
            "[1022 ca_circuit_changed] ca=%s from=%s to=%s",
            name,
            old,
            new,
            extra={"event_id": 1022, "event": "ca_circuit_changed", "fields": {"ca": name}},
        )
        if self._on_state_change is not None:
            self._on_state_change(name, old, new)

    def _timeout(self, deadline: float) -> float:
        return min(self.call_timeout_s, deadline - self._clock())

    # -- health -------------------------------------------------------------------------

    def ca_states(self) -> dict[str, str]:
        return {name: breaker.state for name, breaker in self.breakers.items()}

    def ca_up(self, name: str) -> bool:
        return self.breakers[name].state == CLOSED

    # -- issuance -----------------------------------------------------------------------

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        template: str,
        request_id: str,
        deadline: float,
    ) -> IssuedCertificate:
        order = self.templates.get(template)
        if order is None:
            raise CARequestRejectedError(f"no CA is configured for template {template!r}")
        uncertain: list[str] = []

        def attempt() -> IssuedCertificate:
            errors: list[str] = []
            auth_failures = 0
            for name in order:
                signer = self._may_have_signed(uncertain, name)
                if signer is not None:
                    # Only this CA can say whether it signed, and only once it answers
                    # again: another CA now could leave two valid certificates.
                    raise NoCAAvailableError(
                        f"{signer} may have signed request {request_id} (its answer was "
                        "lost); held until it can be searched",
                        uncertain=tuple(uncertain),
                    )
                breaker = self.breakers[name]
                if not breaker.allow():
                    errors.append(f"{name}: circuit open")
                    continue
                timeout = self._timeout(deadline)
                if timeout <= 0:
                    breaker.release()
                    errors.append(f"{name}: deadline reached")
                    break
                try:
                    issued = self.cas[name].issue(csr, template, request_id, timeout=timeout)
                except CARetryableError as exc:
                    ambiguous = bool(getattr(exc, "ambiguous", False))
                    if ambiguous and name not in uncertain:
                        uncertain.append(name)
                    if (ambiguous or isinstance(exc, CAElectingError)) and breaker.wait_out():
                        # Its cluster elects a new active node, or may still commit what
                        # it got: retry it (or hold the request), never the next CA yet.
                        breaker.release()
                        raise
                    breaker.record_failure()
                    errors.append(str(exc))
                    log.warning(
                        "[1020 ca_unavailable] ca=%s request_id=%s error=%s",
                        name,
                        request_id,
                        exc,
                        extra={"event_id": 1020, "event": "ca_unavailable"},
                    )
                    continue
                except CAAuthError as exc:
                    # This CA refuses our key; another CA of the template may not.
                    breaker.release()
                    auth_failures += 1
                    errors.append(str(exc))
                    continue
                except CAPermanentError:
                    breaker.record_success()  # it answered: the CA is healthy
                    raise
                breaker.record_success()
                if name != order[0]:
                    log.info(
                        "[1023 ca_failover] request_id=%s template=%s ca=%s",
                        request_id,
                        template,
                        name,
                        extra={"event_id": 1023, "event": "ca_failover"},
                    )
                if uncertain:
                    # Every CA that may have signed, this one included (an earlier try
                    # here may have been committed too): the caller searches them all.
                    others = tuple(uncertain)
                    issued = IssuedCertificate(
                        certificate=issued.certificate,
                        chain=issued.chain,
                        ca_name=issued.ca_name,
                        serial=issued.serial,
                        aki=issued.aki,
                        status=issued.status,
                        uncertain=others,
                    )
                return issued
            if auth_failures and auth_failures == len(order):
                raise CAAuthError(f"every CA of {template!r} refused our auth key: {errors}")
            raise NoCAAvailableError(f"no CA of template {template!r} issued: " + "; ".join(errors))

        retrying = self.policies["issue"].retrying(deadline, clock=self._clock, sleep=self._sleep)
        try:
            return retrying(attempt)
        except CARetryableError as exc:
            log.error(
                "[1021 ca_all_down] request_id=%s template=%s",
                request_id,
                template,
                extra={"event_id": 1021, "event": "ca_all_down"},
            )
            if uncertain:
                # Any attempt may have signed, not only the last one's CA.
                raise NoCAAvailableError(str(exc), uncertain=tuple(uncertain)) from exc
            raise

    def _may_have_signed(self, uncertain: Sequence[str], before: str) -> str | None:
        """A CA that holds lost answers (searched through its own API) and may have
        signed, other than ``before``: the request must not go to ``before`` yet."""
        for name in uncertain:
            if name != before and name in self.holds_lost:
                return name
        return None

    # -- revocation ---------------------------------------------------------------------

    def ca_for(self, certificate: x509.Certificate) -> str:
        """The name of the CA that issued ``certificate`` (by AKI, else issuer name)."""
        aki = aki_of(certificate)
        for name, ca in self.cas.items():
            if aki and aki == _ski(ca.certificate):
                return name
        for name, ca in self.cas.items():
            if certificate.issuer == ca.certificate.subject:
                return name
        raise CARequestRejectedError(
            f"no configured CA issued {certificate.issuer.rfc4514_string()!r}"
        )

    def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
        """Revoke at ``issuer_ca`` only. Already revoked: done. CA down: CAUnavailableError."""
        ca = self.cas.get(issuer_ca)
        if ca is None:
            raise CARequestRejectedError(f"unknown issuing CA {issuer_ca!r}")
        breaker = self.breakers[issuer_ca]

        def attempt() -> None:
            if not breaker.allow():
                raise CACircuitOpenError(
                    "circuit open", ca_name=issuer_ca, retry_after_s=breaker.retry_after()
                )
            timeout = self._timeout(deadline)
            if timeout <= 0:
                breaker.release()
                raise CAUnavailableError("deadline reached", ca_name=issuer_ca)
            try:
                ca.revoke(serial, reason, timeout=timeout)
            except CARetryableError as exc:
                # Within the patience an election (or a node lost mid-call) opens no
                # breaker: issuance keeps to this CA while its cluster recovers.
                patient = bool(getattr(exc, "ambiguous", False)) or isinstance(exc, CAElectingError)
                if patient and breaker.wait_out():
                    breaker.release()
                else:
                    breaker.record_failure()
                raise
            except CAAuthError:
                breaker.release()
                raise
            except CAPermanentError:
                breaker.record_success()
                raise
            breaker.record_success()

        retrying = self.policies["revoke"].retrying(deadline, clock=self._clock, sleep=self._sleep)
        retrying(attempt)
        log.info(
            "[3030 ca_revoked] ca=%s serial=%d reason=%s",
            issuer_ca,
            serial,
            reason,
            extra={"event_id": 3030, "event": "ca_revoked"},
        )

    def revoke_certificate(
        self, certificate: x509.Certificate, reason: str, deadline: float
    ) -> None:
        self.revoke(certificate.serial_number, self.ca_for(certificate), reason, deadline)

    def status(self, serial: int, issuer_ca: str) -> CertStatus:
        return self.cas[issuer_ca].status(serial)

    # -- reconciliation -----------------------------------------------------------------

    def find(self, public_key: PublicKeyTypes) -> list[IssuedCertificate]:
        """Every certificate any CA issued for ``public_key``; raises if a CA cannot be read."""
        return self.find_many([public_key])[0]

    def find_many(self, keys: Sequence[PublicKeyTypes]) -> list[list[IssuedCertificate]]:
        """:meth:`find` per key, each CA read once for them all where it can (a certdb)."""
        found: list[list[IssuedCertificate]] = [[] for _ in keys]
        for ca in self.cas.values():
            many = getattr(ca, "find_many", None)
            per_key = many(keys) if callable(many) else [ca.find(key) for key in keys]
            for index, certificates in enumerate(per_key):
                found[index].extend(certificates)
        return found

    def reconcile_states(self) -> dict[str, ReconcileState]:
        """Per CA: can reconciliation search it (from the last certdb call, no I/O)."""
        return {name: _reconcile_state(name, ca, probe=False) for name, ca in self.cas.items()}

    def probe_certdbs(self) -> dict[str, ReconcileState]:
        """Per CA: ask each certdb now (bounded by its timeouts), then report."""
        return {name: _reconcile_state(name, ca, probe=True) for name, ca in self.cas.items()}

    def warm_certdbs(self) -> None:
        """Every certdb learns the keys issued since its last search (CFSSL)."""
        for ca in self.cas.values():
            warm = getattr(ca, "warm_certdb", None)
            if callable(warm):
                warm()

    def certdb_indexed_rows(self, name: str) -> int:
        """Certificates of CA ``name``'s certdb whose key this process remembers (0 for a
        CA that keeps no such index)."""
        rows = getattr(self.cas[name], "certdb_indexed_rows", None)
        return int(rows()) if callable(rows) else 0

    def probe(self, name: str, *, timeout: float) -> bool:
        """Does CA ``name`` answer now? (reachability for work-aware leadership; no breaker)."""
        probe = getattr(self.cas[name], "probe", None)
        if not callable(probe):
            return self.ca_up(name)
        try:
            probe(timeout=timeout)
        except CAError:
            return False
        return True

    def reload_auth(self, specs: Mapping[str, Mapping[str, Any]]) -> list[ReloadOutcome]:
        """Each CA re-reads its auth material from ``specs[name]`` (SIGHUP).

        A CA whose new material is refused keeps the old (the outcome names the
        setting); the others are reloaded all the same.
        """
        outcomes = []
        for name, ca in self.cas.items():
            reload = getattr(ca, "reload_auth", None)
            if name not in specs or not callable(reload):
                continue
            try:
                settings = reload(specs[name])
            except AuthMaterialError as exc:
                outcomes.append(ReloadOutcome(name, refused=exc.setting, reason=exc.reason))
                continue
            outcomes.append(ReloadOutcome(name, tuple(settings)))
        return outcomes

    def close(self) -> None:
        for ca in self.cas.values():
            close = getattr(ca, "close", None)
            if callable(close):
                close()


def _reconcile_state(name: str, ca: IssuingCA, *, probe: bool) -> ReconcileState:
    """A CA without certdb methods searches through its own API (OpenBao-like)."""
    method = getattr(ca, "probe_certdb" if probe else "reconcile_state", None)
    if not callable(method):
        return ReconcileState(name, "api", True, "the CA searches itself")
    state = method()
    if not isinstance(state, ReconcileState):
        return ReconcileState(name, "api", False, f"unexpected reconcile state {state!r}")
    return state
