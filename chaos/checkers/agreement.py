"""The CA and the service agree on what is revoked (issue 18).

    violations = check_ca_agreement(snapshot)

A certificate the service delivers (a request with a serial) that is revoked
at its issuing CA although the service never asked for its revocation means
someone revoked it behind the service's back: an anonymous ``revoke`` at a
CFSSL without mutual TLS did exactly that (the device keeps a certificate
that no longer works, and the service shows it as good). The other way round,
a revocation the connector carried out that the CA no longer shows (CFSSL's
``removeFromCRL`` un-revokes) is flagged by
:func:`chaos.checkers.revocations.check_revocations` ("confirmed but ... not
revoked at its CA", "missing from ... CRL"), and an orphan un-revoked the same
way by :func:`chaos.checkers.certificates.check_duplicates`.
"""

from __future__ import annotations

from chaos.checkers.model import Snapshot

__all__ = ["check_ca_agreement"]


def check_ca_agreement(snapshot: Snapshot) -> list[str]:
    at_ca = {(c.ca, c.serial): c for c in snapshot.ca_certificates}
    asked = {(r.issuer, r.serial) for r in snapshot.revocations}
    violations: list[str] = []
    for delivered in snapshot.delivered:
        key = (delivered.issuer, delivered.serial)
        cert = at_ca.get(key)
        if cert is not None and cert.revoked and key not in asked:
            violations.append(
                f"certificate {delivered.issuer}:{delivered.serial} delivered for request "
                f"{delivered.request} is revoked at its CA (reason {cert.reason or '?'}) but "
                "the service never asked for it: revoked behind the service's back"
            )
    return violations
