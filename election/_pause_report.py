"""Maintenance (``pfxha pause``) as one member says it: entering and leaving, once each.

    report = PauseReport("c1")
    report.update(paused=True, decision=decision, leading=False)   # 5050, once
    report.update(paused=False, decision=decision, leading=False)  # 5051, once

While the cluster is paused a standby logs the first reason it waits (a crash
the pause keeps it from healing reads differently from a quiet line) and a
leader that it leads on with automatic failover off; each line once, not every
heartbeat.
"""

from __future__ import annotations

import logging

from election._decide import Action, Decision

__all__ = ["PauseReport"]

log = logging.getLogger("pfxha.election")


class PauseReport:
    """What this member last said about the pause, so that it says each thing once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._said: str | None = None

    def update(self, paused: bool, decision: Decision, *, leading: bool) -> None:
        said = decision.reason if paused and decision.action is Action.WAIT else None
        if paused and leading:
            said = "paused: leading on, automatic failover off"
        if said == self._said:
            return
        if said is not None:
            log.warning("[5050] %s: %s", self.name, said, extra={"event_id": 5050})
        elif self._said is not None:
            log.warning(
                "[5051] %s: cluster resumed, automatic failover on",
                self.name,
                extra={"event_id": 5051},
            )
        self._said = said
