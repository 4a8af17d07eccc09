"""At most one unrevoked certificate per request, and it is the delivered one.

Certificates are attributed to requests from the CA side, not from what the
connectors say: a CA certdb row belongs to the request whose recorded intent
has the same public key (the intent is written at the service before the CA
is called), or, failing that, to the request it was delivered for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from chaos.checkers.model import CaCertificate, DeliveredCertificate, Snapshot

__all__ = [
    "attribute_certificates",
    "check_duplicates",
    "count_duplicates",
    "count_extras",
    "late_certificates",
]


def attribute_certificates(
    snapshot: Snapshot,
) -> tuple[dict[str, list[CaCertificate]], list[CaCertificate]]:
    """``(request -> its CA certificates, certificates no request explains)``."""
    request_by_key = {i.public_key_sha256: i.request for i in snapshot.intents}
    request_by_serial = {(d.issuer, d.serial): d.request for d in snapshot.delivered}
    by_request: dict[str, list[CaCertificate]] = defaultdict(list)
    unattributed: list[CaCertificate] = []
    for cert in snapshot.ca_certificates:
        request = request_by_key.get(cert.public_key_sha256) if cert.public_key_sha256 else None
        if request is None:
            request = request_by_serial.get((cert.ca, cert.serial))
        if request is None:
            unattributed.append(cert)
        else:
            by_request[request].append(cert)
    return dict(by_request), unattributed


def check_duplicates(snapshot: Snapshot) -> list[str]:
    violations: list[str] = []
    delivered = {d.request: d for d in snapshot.delivered}
    by_request, unattributed = attribute_certificates(snapshot)
    for request, certs in sorted(by_request.items()):
        live = [c for c in certs if not c.revoked]
        if len(live) > 1:
            listed = ", ".join(f"{c.ca}:{c.serial}" for c in live)
            violations.append(
                f"duplicate certificates for request {request}: {len(live)} unrevoked ({listed})"
            )
            continue
        if len(live) == 1:
            cert = live[0]
            got = delivered.get(request)
            if got is None or (got.issuer, got.serial) != (cert.ca, cert.serial):
                shown = f"{got.issuer}:{got.serial}" if got else "nothing"
                violations.append(
                    f"unrevoked certificate {cert.ca}:{cert.serial} for request {request} "
                    f"is not the delivered one (delivered {shown})"
                )
    for cert in unattributed:
        if not cert.revoked:
            violations.append(
                f"unrevoked certificate {cert.ca}:{cert.serial} matches no request's intent "
                "or delivery (an orphan)"
            )
    return violations


def count_duplicates(snapshot: Snapshot) -> int:
    """Requests with more than one unrevoked certificate (the JSON's ``duplicates``)."""
    return count_extras(snapshot)[0]


def count_extras(snapshot: Snapshot) -> tuple[int, int]:
    """``(duplicates, orphans)`` from one attribution: requests with more than one
    unrevoked certificate, and unrevoked certificates no request explains (a late
    one waits for its revocation)."""
    by_request, unattributed = attribute_certificates(snapshot)
    duplicates = sum(1 for certs in by_request.values() if sum(not c.revoked for c in certs) > 1)
    return duplicates, sum(1 for cert in unattributed if not cert.revoked)


def late_certificates(
    keys_in_doubt: Mapping[str, str],
    delivered: Iterable[DeliveredCertificate],
    certificates: Iterable[CaCertificate],
) -> list[tuple[str, CaCertificate]]:
    """``(request, certificate)`` for each certificate of a key in doubt that is not
    the delivered one: a CA whose answer was lost signed the key after all.

    ``keys_in_doubt`` maps key (SPKI SHA-256) -> request, as
    :meth:`chaos.checkers.state.ServiceDb.keys_in_doubt` reads it.
    """
    held = {d.request: (d.issuer, d.serial) for d in delivered}
    found: list[tuple[str, CaCertificate]] = []
    for cert in certificates:
        request = keys_in_doubt.get(cert.public_key_sha256)
        if request is not None and held.get(request) != (cert.ca, cert.serial):
            found.append((request, cert))
    return found
