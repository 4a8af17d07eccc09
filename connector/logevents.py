"""Structured log events with stable IDs, shared by the connector and the service.

    class Event(enum.IntEnum):
        ISSUED = 1001

    log_event(logger, Event.ISSUED, logging.INFO, request="r1", serial=42)
    # -> "[1001 issued] request=r1 serial=42", with extra event_id/event/fields
    #    for the JSON formatter

The ID ranges follow the Intune connector's: 1000s issuance, 3000s revocation,
5000s leadership.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["log_event"]


def log_event(
    logger: logging.Logger, event: enum.IntEnum, level: int, fields: Mapping[str, Any]
) -> None:
    """Log ``event`` at ``level`` with its stable ID and structured ``fields``."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(
        level,
        "[%d %s] %s",
        int(event),
        event.name.lower(),
        text,
        extra={"event_id": int(event), "event": event.name.lower(), "fields": dict(fields)},
    )
