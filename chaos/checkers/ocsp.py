"""Revocation as a relying party checks it online: the CA's OCSP responder agrees.

For each CA that runs an OCSP responder (OpenBao), every certificate it lists
must answer ``revoked`` when it is revoked (at the CA, or by a revocation the
service confirmed) and ``good`` otherwise, a delivered certificate above all.
No answer, or one the checker could not verify, is a violation too.

    violations = check_ocsp(snapshot)      # snapshot.ocsp: CA -> serial -> answer
"""

from __future__ import annotations

from chaos.checkers.model import Snapshot
from chaos.checkers.revocations import DONE_STATES

__all__ = ["check_ocsp", "expected_ocsp"]


def expected_ocsp(snapshot: Snapshot, ca: str) -> dict[str, str]:
    """Decimal serial -> the answer CA ``ca``'s responder owes (``good`` or ``revoked``)."""
    expected = {
        c.serial: "revoked" if c.revoked else "good" for c in snapshot.ca_certificates if c.ca == ca
    }
    for delivered in snapshot.delivered:
        if delivered.issuer == ca:
            expected.setdefault(delivered.serial, "good")
    for revocation in snapshot.revocations:
        if revocation.issuer == ca and revocation.state in DONE_STATES:
            expected[revocation.serial] = "revoked"
    return expected


def check_ocsp(snapshot: Snapshot) -> list[str]:
    violations: list[str] = []
    delivered = {(d.issuer, d.serial) for d in snapshot.delivered}
    for ca, answers in sorted(snapshot.ocsp.items()):
        for serial, owed in sorted(expected_ocsp(snapshot, ca).items()):
            answer = answers.get(serial)
            what = "delivered certificate" if (ca, serial) in delivered else "certificate"
            if answer is None:
                violations.append(f"OCSP: {ca} gave no answer for {what} {ca}:{serial}")
            elif answer != owed:
                violations.append(
                    f"OCSP: {ca} answers {answer!r} for {what} {ca}:{serial}, expected {owed!r}"
                )
    return violations
