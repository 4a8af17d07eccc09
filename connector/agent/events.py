"""Stable event IDs and structured log records for the connector agent.

Operators grep and alert on these numbers, so they never change meaning. The
ranges follow the Intune connector's (1000s issuance, 3000s revocation) plus
5000s for leadership::

    from connector.agent.events import Event, emit

    emit(log, Event.CERT_ISSUED, request_id="r1", serial="12", ca="primary",
         connector="c1", epoch=7)

Every event of :data:`AUDIT_EVENTS` (issuance and revocation of one
certificate) carries ``connector`` and ``epoch``: which member, under which
leadership, did it. ``pfxha history --serial`` joins them with ZooKeeper's
leadership history; ``tests/unit/test_audit_events.py`` checks every call site.

Each record carries ``event_id``, ``event`` and the fields in ``record.fields``;
:class:`JsonFormatter` writes one JSON object per line. Never pass key material
as a field: the formatter writes whatever it is given.
"""

from __future__ import annotations

import json
import logging
import time
from enum import IntEnum
from typing import Any

from connector.logevents import log_event

__all__ = ["AUDIT_EVENTS", "Event", "JsonFormatter", "emit"]


class Event(IntEnum):
    # 1000s: issuance
    BATCH_RECEIVED = 1000
    INTENT_RECORDED = 1001
    CERT_ISSUED = 1002
    PFX_UPLOADED = 1003
    REQUEST_FAILED = 1010
    REQUEST_DEFERRED = 1011
    CA_UNAVAILABLE = 1020
    CA_ALL_DOWN = 1021
    KEYPOOL_STARTED = 1030
    # SIGHUP: a CA's auth material re-read (or the new one refused, the old kept).
    CA_AUTH_RELOADED = 1040
    CA_AUTH_RELOAD_REFUSED = 1041
    # 3000s: revocation
    REVOCATIONS_RECEIVED = 3000
    CERT_REVOKED = 3001
    REVOCATION_CONFIRMED = 3002
    REVOCATION_DEFERRED = 3010
    REVOCATION_FAILED = 3011
    ORPHAN_FOUND = 3020
    ORPHAN_REVOKED = 3021
    UNDELIVERABLE_REVOKED = 3022
    # 5000s: leadership. 5001-5003 mean what the election's own lines mean;
    # the agent's own events are 5200s (the election uses 5010-5099, the
    # service 5100s).
    ELECTED = 5001
    DEMOTED = 5002
    ROLE_CHANGED = 5003
    AGENT_STARTED = 5200
    REGISTERED = 5204
    STALE_EPOCH = 5205
    STEPPED_DOWN = 5206
    RELEASED = 5207
    # Issue 18: the service refused this connector as revoked; it leaves the election.
    CONNECTOR_REVOKED = 5208
    LEFT_ELECTION = 5209
    RECONCILE_STARTED = 5210
    RECONCILE_DONE = 5211
    # An intent whose CA certdb cannot be searched: it stays in flight (not re-issued).
    RECONCILE_BLOCKED = 5212
    # A certdb stopped / started answering (probe or real call); reconcile = "off" at start.
    CERTDB_UNAVAILABLE = 5213
    CERTDB_AVAILABLE = 5214
    RECONCILE_OFF = 5215
    # A CA got the request but its answer was lost, and its certdb shows nothing yet:
    # held for the same-epoch sweep instead of re-issued with a new key.
    CA_ANSWER_LOST = 5216
    # Work-aware leadership: the leader handed over (or could not) to a standby
    # that reaches what it cannot; a standby kept out of the line (or back in).
    YIELDED = 5230
    YIELD_REFUSED = 5231
    WITHHELD = 5232
    # Placement: a leader on the ZooKeeper leader's host handed over, a standby moved
    # to the back of the line, or the placement budget refused (election 5061-5063).
    PLACEMENT = 5233
    HEALTH_CHANGED = 5220
    SERVICE_UNAVAILABLE = 5221
    LEASE_NOT_FRESH = 5222
    AGENT_STOPPED = 5299


# The events that say what happened to one certificate (or revocation): each
# names the connector and the epoch it acted under.
AUDIT_EVENTS = frozenset(
    {
        Event.CERT_ISSUED,
        Event.PFX_UPLOADED,
        Event.CERT_REVOKED,
        Event.REVOCATION_CONFIRMED,
        Event.REVOCATION_DEFERRED,
        Event.REVOCATION_FAILED,
        Event.ORPHAN_FOUND,
        Event.ORPHAN_REVOKED,
        Event.UNDELIVERABLE_REVOKED,
    }
)

_LEVELS: dict[Event, int] = {
    # One per request and no news: the service keeps every intent (it logs them at
    # DEBUG too); cert_issued and pfx_uploaded stay INFO as the issuance trail.
    # Each INFO line costs the leader's issuing threads about 0.2 ms of CPU.
    Event.INTENT_RECORDED: logging.DEBUG,
    Event.REQUEST_FAILED: logging.WARNING,
    Event.REQUEST_DEFERRED: logging.WARNING,
    Event.CA_UNAVAILABLE: logging.WARNING,
    Event.CA_ALL_DOWN: logging.ERROR,
    Event.CA_AUTH_RELOAD_REFUSED: logging.ERROR,
    Event.REVOCATION_DEFERRED: logging.WARNING,
    Event.REVOCATION_FAILED: logging.ERROR,
    Event.ORPHAN_FOUND: logging.WARNING,
    Event.DEMOTED: logging.WARNING,
    Event.STALE_EPOCH: logging.ERROR,
    Event.STEPPED_DOWN: logging.WARNING,
    Event.CONNECTOR_REVOKED: logging.ERROR,
    Event.LEFT_ELECTION: logging.ERROR,
    Event.SERVICE_UNAVAILABLE: logging.WARNING,
    Event.LEASE_NOT_FRESH: logging.WARNING,
    Event.RECONCILE_BLOCKED: logging.ERROR,
    Event.CERTDB_UNAVAILABLE: logging.ERROR,
    Event.RECONCILE_OFF: logging.WARNING,
    Event.CA_ANSWER_LOST: logging.WARNING,
    Event.YIELDED: logging.WARNING,
    Event.YIELD_REFUSED: logging.ERROR,
    Event.WITHHELD: logging.WARNING,
    Event.PLACEMENT: logging.WARNING,
}


def emit(logger: logging.Logger, event: Event, /, **fields: Any) -> None:
    """Log ``event`` with its stable ID and structured ``fields``."""
    log_event(logger, event, _LEVELS.get(event, logging.INFO), fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event_id, event, fields, message."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        event_id = getattr(record, "event_id", None)
        fields = getattr(record, "fields", None)
        if event_id is not None:
            payload["event_id"] = event_id
            payload["event"] = getattr(record, "event", None) or None
        if isinstance(fields, dict) and getattr(record, "event", None):
            payload.update(fields)
        else:
            # Records of other modules (the election's, libraries') keep their text.
            payload["message"] = record.getMessage()
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
