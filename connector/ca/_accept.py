"""What every driver does with a CA's answer before it hands a certificate out.

    certificate = accept_issued(reply_data, csr, chain, profile, ca_name="primary",
                                request_id="r1")

The answer must carry a PEM ``certificate`` for the CSR's key, issued by
``chain[0]`` up to the root, with the template's EKUs
(:func:`connector.pki.validate_issued`); anything else is logged as
``1024 ca_response_rejected`` and raised as :class:`CABadResponseError`
(retryable: another CA, or a later try, may answer properly).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography import x509

from connector.ca._errors import CABadResponseError
from connector.ca._profiles import CaProfile
from connector.pki.validate import CertificateValidationError, validate_issued

__all__ = ["accept_issued"]

log = logging.getLogger("pfxha.connector.ca")


def accept_issued(
    data: object,
    csr: x509.CertificateSigningRequest,
    chain: Sequence[x509.Certificate],
    profile: CaProfile,
    *,
    ca_name: str,
    request_id: str,
) -> x509.Certificate:
    pem = data.get("certificate") if isinstance(data, dict) else None
    if not isinstance(pem, str):
        raise CABadResponseError("reply carries no certificate", ca_name=ca_name)
    try:
        return validate_issued(pem, csr, chain, required_ekus=profile.ekus, chain_verified=True)
    except CertificateValidationError as exc:
        log.warning(
            "[1024 ca_response_rejected] ca=%s request_id=%s reason=%s",
            ca_name,
            request_id,
            exc,
            extra={"event_id": 1024, "event": "ca_response_rejected"},
        )
        raise CABadResponseError(
            f"rejected the issued certificate: {exc}", ca_name=ca_name
        ) from exc
