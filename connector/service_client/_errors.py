"""The service client's exceptions: what a refused or unanswered call means to the caller."""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ConnectorRevokedError",
    "ServiceError",
    "ServiceUnavailable",
    "StaleEpochError",
]


class ServiceError(Exception):
    """The service refused or could not answer a call; ``status`` is the HTTP status or None."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = message


class StaleEpochError(ServiceError):
    """HTTP 409: the epoch is lower than the highest the service has seen. Step down."""

    def __init__(self, message: str, *, highest_epoch: int | None = None) -> None:
        super().__init__(message, status=409)
        self.highest_epoch = highest_epoch


class ServiceUnavailable(ServiceError):  # noqa: N818 - the agreed contract name
    """Connection failure, timeout or 5xx: nothing is known to have changed; retry later."""


class BadRequest(ServiceError):  # noqa: N818 - the agreed contract name
    """Any other 4xx (400 refused input, 403 revoked, 404 unknown id, 422 schema, 428 ...)."""


class ConnectorRevokedError(BadRequest):
    """403 with ``connector_revoked: true``: an admin revoked this connector. Leave."""
