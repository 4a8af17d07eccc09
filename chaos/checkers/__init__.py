"""Invariant checkers: pure functions over the history and a state snapshot.

Each returns a list of violations as human-readable strings (empty = fine)::

    from chaos.checkers import Snapshot, check_all
    violations = check_all(events, snapshot)

The snapshot is read from the service DB, each CA's certdb (or API listing),
CRL and OCSP responder; the
history from what the workload, observer and nemesis saw. Nothing here
trusts the connectors' own account.
"""

from __future__ import annotations

from collections.abc import Iterable

from chaos.checkers.agreement import check_ca_agreement
from chaos.checkers.certificates import (
    attribute_certificates,
    check_duplicates,
    count_duplicates,
    count_extras,
    late_certificates,
)
from chaos.checkers.epochs import check_single_active, check_stale_epochs
from chaos.checkers.model import (
    AcceptedAction,
    CaCertificate,
    DeliveredCertificate,
    Intent,
    RequestRecord,
    Revocation,
    Snapshot,
)
from chaos.checkers.ocsp import check_ocsp
from chaos.checkers.pfx import check_pfx_history, verify_chain, verify_delivered_pfx
from chaos.checkers.requests import RequestCounts, check_lost_requests, count_requests
from chaos.checkers.revocations import check_revocations
from chaos.checkers.user_scope import check_user_scope, count_user_scope
from chaos.history import Event

__all__ = [
    "AcceptedAction",
    "CaCertificate",
    "DeliveredCertificate",
    "Intent",
    "RequestCounts",
    "RequestRecord",
    "Revocation",
    "Snapshot",
    "attribute_certificates",
    "check_all",
    "check_ca_agreement",
    "check_duplicates",
    "check_lost_requests",
    "check_ocsp",
    "check_pfx_history",
    "check_revocations",
    "check_single_active",
    "check_stale_epochs",
    "check_user_scope",
    "count_duplicates",
    "count_extras",
    "count_requests",
    "count_user_scope",
    "late_certificates",
    "verify_chain",
    "verify_delivered_pfx",
]


def check_all(events: Iterable[Event], snapshot: Snapshot) -> list[str]:
    """Every invariant at once, in a stable order."""
    history = list(events)
    return [
        *check_stale_epochs(snapshot.accepted),
        *check_single_active(history),
        *check_lost_requests(history, snapshot.requests),
        *check_duplicates(snapshot),
        *check_revocations(snapshot),
        *check_ocsp(snapshot),
        *check_ca_agreement(snapshot),
        *check_pfx_history(history),
        *check_user_scope(snapshot),
    ]
