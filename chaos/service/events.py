"""Stable event IDs of the service's log lines (1000s issuance, 3000s revocation, 5000s
leadership), in the connector's format: ``[1120 result_accepted] request=... serial=...``.

    emit(log, Event.RESULT_ACCEPTED, request=req_id, serial=serial, epoch=epoch)

Fields never carry key material, envelopes or tokens.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from connector.logevents import log_event

__all__ = ["Event", "emit", "log"]

log = logging.getLogger("pfxha.service")


class Event(enum.IntEnum):
    REQUESTS_QUEUED = 1100
    RENEWALS_QUEUED = 1101
    INTENT_RECORDED = 1110
    RESULT_ACCEPTED = 1120
    RESULT_REFUSED = 1121
    REQUEST_FAILED = 1150
    DELIVERED = 1160
    INSTALLED = 1170
    DEVICE_FAILED = 1171
    KEY_RECOVERED = 1180
    KEY_RECOVERY_REFUSED = 1181
    PFX_IMPORTED = 1190
    PFX_IMPORT_REFUSED = 1191
    REVOCATION_EVENT = 3100
    REVOCATION_CONFIRMED = 3110
    DEVICE_DELETED = 3120
    CONNECTOR_REGISTERED = 5100
    STALE_EPOCH_REFUSED = 5110
    NOT_REGISTERED_REFUSED = 5111
    REVOKED_CONNECTOR_REFUSED = 5112
    EPOCH_FORGERY_REFUSED = 5113
    EPOCH_ACCEPTED_BY_ADMIN = 5114
    CONNECTOR_REVOKED = 5120
    ENROLLMENT_TOKEN_CREATED = 5130
    CONNECTOR_ENROLLED = 5131
    ENROLLMENT_REFUSED = 5132
    CONNECTOR_CERT_RENEWED = 5133
    CLIENT_CERT_REFUSED = 5134


_LEVELS = {
    Event.INTENT_RECORDED: logging.DEBUG,
    Event.DELIVERED: logging.DEBUG,
    Event.RESULT_REFUSED: logging.WARNING,
    Event.STALE_EPOCH_REFUSED: logging.WARNING,
    Event.NOT_REGISTERED_REFUSED: logging.WARNING,
    Event.REVOKED_CONNECTOR_REFUSED: logging.WARNING,
    Event.EPOCH_FORGERY_REFUSED: logging.WARNING,
    Event.EPOCH_ACCEPTED_BY_ADMIN: logging.WARNING,
    Event.DEVICE_FAILED: logging.WARNING,
    Event.KEY_RECOVERED: logging.WARNING,  # an operator should see every one
    Event.KEY_RECOVERY_REFUSED: logging.WARNING,
    Event.PFX_IMPORT_REFUSED: logging.WARNING,
}


def emit(logger: logging.Logger, event: Event, /, **fields: Any) -> None:
    log_event(logger, event, _LEVELS.get(event, logging.INFO), fields)
