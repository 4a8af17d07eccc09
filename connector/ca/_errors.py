"""The CA exception tree: retryable (try later or at another CA) vs. permanent.

    CAError
    ├── CARetryableError          the request may succeed later or elsewhere
    │   ├── CAUnavailableError    refused, timed out, 5xx, circuit open (Intune: CA unavailable)
    │   │   ├── CAElectingError   a CA cluster answers but has no active node (Raft election)
    │   │   └── CACircuitOpenError  not called: its circuit is open (the breaker says when)
    │   ├── CABadResponseError    garbage, wrong key/issuer/chain: rejected, never packed
    │   └── NoCAAvailableError    the router tried every CA of the template until the deadline
    └── CAPermanentError          retrying the same request cannot help
        ├── CAAuthError           the CA refused our auth key (Intune: access denied)
        ├── CARequestRejectedError  bad CSR, unknown template, bad reason
        └── CANotFoundError       no such serial at that CA (Intune: 4xx not found)

An already revoked certificate is not an error: revocation is idempotent.
"""

from __future__ import annotations

__all__ = [
    "CAAuthError",
    "CABadResponseError",
    "CACircuitOpenError",
    "CAElectingError",
    "CAError",
    "CANotFoundError",
    "CAPermanentError",
    "CARequestRejectedError",
    "CARetryableError",
    "CAUnavailableError",
    "NoCAAvailableError",
    "is_retryable",
]


class CAError(Exception):
    """A CA call failed; ``ca_name`` says where, ``code`` is the CA's own code if any.

    ``kind`` is a stable, low-cardinality word for metrics labels and reports.
    """

    retryable = False
    kind = "error"

    def __init__(self, message: str, *, ca_name: str | None = None, code: int | None = None):
        super().__init__(f"{ca_name}: {message}" if ca_name else message)
        self.ca_name = ca_name
        self.code = code


class CARetryableError(CAError):
    retryable = True


class CAUnavailableError(CARetryableError):
    """``ambiguous`` is true when the request was sent but no answer came (it may have acted)."""

    kind = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        ca_name: str | None = None,
        code: int | None = None,
        ambiguous: bool = False,
    ):
        super().__init__(message, ca_name=ca_name, code=code)
        self.ambiguous = ambiguous


class CACircuitOpenError(CAUnavailableError):
    """Not called: the CA failed too often in a row and its circuit is open.

    ``retry_after_s``: how long until the breaker lets a probe through. A retry
    loop waits for that only when its deadline leaves room for it; otherwise it
    fails at once and the caller defers the work. A leader whose CA hung spent its
    loop turns sleeping to its deadline so, about a second for each revocation it
    then had to defer anyway (drill ``ca-stall``).
    """

    def __init__(self, message: str, *, ca_name: str | None = None, retry_after_s: float = 0.0):
        super().__init__(message, ca_name=ca_name)
        self.retry_after_s = retry_after_s


class CAElectingError(CAUnavailableError):
    """The CA's cluster answers but has no active node now (a leader election under way).

    Worth waiting for: the router does not fail over to the next CA for it until the
    CA's ``failover_patience_s`` has run out (:class:`connector.ca.CircuitBreaker`).
    """

    kind = "electing"


class CABadResponseError(CARetryableError):
    kind = "bad_response"


class NoCAAvailableError(CARetryableError):
    """No CA of the template issued. ``uncertain`` names the CAs that got the request
    but gave no answer: they may have signed (the certificate may appear later)."""

    kind = "all_unavailable"

    def __init__(
        self,
        message: str,
        *,
        ca_name: str | None = None,
        code: int | None = None,
        uncertain: tuple[str, ...] = (),
    ):
        super().__init__(message, ca_name=ca_name, code=code)
        self.uncertain = uncertain

    @property
    def ambiguous(self) -> bool:
        return bool(self.uncertain)


class CAPermanentError(CAError):
    retryable = False


class CAAuthError(CAPermanentError):
    kind = "auth"


class CARequestRejectedError(CAPermanentError):
    kind = "rejected"


class CANotFoundError(CAPermanentError):
    kind = "not_found"


def is_retryable(exc: BaseException) -> bool:
    """True for :class:`CARetryableError`; False for anything else."""
    return isinstance(exc, CAError) and exc.retryable
