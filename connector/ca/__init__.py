"""Issuing certificate authorities: CFSSL and OpenBao clients, certdb reader, breakers, failover.

from connector.ca import CARouter, ca_from_dict
cas = {name: ca_from_dict(spec) for name, spec in lab.describe()["cas"].items()}  # by "kind"
router = CARouter(cas, {"user-auth": ["primary", "secondary"]})
issued = router.issue(csr, "user-auth", request_id, deadline=time.monotonic() + 5)

router = router_from_description(lab.describe())   # the same, in one call
"""

from collections.abc import Mapping
from typing import Any

from connector.ca._breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from connector.ca._certdb import (
    CertDB,
    CertDBAuthError,
    CertDBError,
    CertDBUnavailableError,
    CertRecord,
    PostgresCertDB,
    SqliteCertDB,
    create_certdb,
    open_certdb,
    redact_dsn,
)
from connector.ca._cfssl import RECONCILE_MODES, CfsslCA
from connector.ca._errors import (
    CAAuthError,
    CABadResponseError,
    CACircuitOpenError,
    CAElectingError,
    CAError,
    CANotFoundError,
    CAPermanentError,
    CARequestRejectedError,
    CARetryableError,
    CAUnavailableError,
    NoCAAvailableError,
    is_retryable,
)
from connector.ca._factory import CA_KINDS, ca_from_dict
from connector.ca._openbao import OpenBaoCA, colon_serial
from connector.ca._profiles import STANDARD_PROFILES, CaProfile
from connector.ca._reload import AuthMaterialError, ReloadOutcome, cfssl_material, openbao_material
from connector.ca._retry import ISSUE_POLICY, RETRY_POLICIES, REVOKE_POLICY, RetryPolicy
from connector.ca._revocation import ocsp_request_der, parse_crl, parse_ocsp_response
from connector.ca._router import CARouter
from connector.ca._types import (
    REVOCATION_REASONS,
    CertStatus,
    IssuedCertificate,
    IssuingCA,
    ReconcileState,
    aki_of,
    normalise_reason,
)

__all__ = [
    "CA_KINDS",
    "CLOSED",
    "HALF_OPEN",
    "ISSUE_POLICY",
    "OPEN",
    "RECONCILE_MODES",
    "RETRY_POLICIES",
    "REVOCATION_REASONS",
    "REVOKE_POLICY",
    "STANDARD_PROFILES",
    "AuthMaterialError",
    "CAAuthError",
    "CABadResponseError",
    "CACircuitOpenError",
    "CAElectingError",
    "CAError",
    "CANotFoundError",
    "CAPermanentError",
    "CARequestRejectedError",
    "CARetryableError",
    "CARouter",
    "CAUnavailableError",
    "CaProfile",
    "CertDB",
    "CertDBAuthError",
    "CertDBError",
    "CertDBUnavailableError",
    "CertRecord",
    "CertStatus",
    "CfsslCA",
    "CircuitBreaker",
    "IssuedCertificate",
    "IssuingCA",
    "NoCAAvailableError",
    "OpenBaoCA",
    "PostgresCertDB",
    "ReconcileState",
    "ReloadOutcome",
    "RetryPolicy",
    "SqliteCertDB",
    "aki_of",
    "ca_from_dict",
    "cfssl_material",
    "colon_serial",
    "create_certdb",
    "is_retryable",
    "normalise_reason",
    "ocsp_request_der",
    "open_certdb",
    "openbao_material",
    "parse_crl",
    "parse_ocsp_response",
    "redact_dsn",
    "router_from_description",
]


def router_from_description(description: Mapping[str, Any], **router_options: Any) -> CARouter:
    """A router over the CAs (by ``kind``) from ``{"cas": {name: spec}, "templates": {t: [..]}}``.

    That is the shape of ``chaos.launch.cfssl.CfsslLab.describe()``; ``router_options``
    go to :class:`CARouter` (timeouts, breaker settings, clock, sleep).
    """
    transport = router_options.pop("transport", None)
    cas = {
        name: ca_from_dict(spec, transport=transport) for name, spec in description["cas"].items()
    }
    return CARouter(cas, description["templates"], **router_options)
