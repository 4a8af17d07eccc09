"""Every revocation is done at the issuing CA and published on that CA's CRL."""

from __future__ import annotations

from chaos.checkers.model import Snapshot

__all__ = ["DONE_STATES", "check_revocations"]

DONE_STATES = frozenset({"done", "confirmed", "revoked", "completed"})


def check_revocations(snapshot: Snapshot) -> list[str]:
    violations: list[str] = []
    at_ca = {(c.ca, c.serial): c for c in snapshot.ca_certificates}
    for revocation in sorted(snapshot.revocations, key=lambda r: r.id):
        where = f"{revocation.issuer}:{revocation.serial}"
        if revocation.state not in DONE_STATES:
            violations.append(
                f"revocation {revocation.id} of {where} still {revocation.state!r} after the drain"
            )
            continue
        cert = at_ca.get((revocation.issuer, revocation.serial))
        if cert is None:
            violations.append(
                f"revocation {revocation.id}: {where} is unknown to its issuing CA's certdb"
            )
        elif not cert.revoked:
            violations.append(
                f"revocation {revocation.id} confirmed but {where} is not revoked at its CA"
            )
        crl = snapshot.crls.get(revocation.issuer)
        if crl is None:
            violations.append(f"revocation {revocation.id}: no CRL read from {revocation.issuer}")
        elif revocation.serial not in crl:
            violations.append(
                f"revocation {revocation.id}: {where} missing from {revocation.issuer}'s CRL"
            )
    return violations
