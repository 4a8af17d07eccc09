"""What a drill engine is given and what it shows: the lab's protocol, the settings,
the live progress, and the error for a lab that never steadies.

    settings = DrillSettings(session_timeout=1.0, burst=2)
    progress = Progress()            # read (under progress.lock) by the live view
    engine = DrillEngine(lab, history, observer, workload, db, settings, progress)
    try:
        engine.run_round(scenario, 1)
    except LabWedgedError: ...       # no steady state within settle_timeout

Importers use :mod:`chaos.drill.engine`, which re-exports every name here; the
engine's parts (:mod:`chaos.drill._steady_waits`, :mod:`chaos.drill._round_measure`)
import them from here so that none of them imports the engine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaos.checkers import CaCertificate, Snapshot
from chaos.drill.result import RoundResult, ScenarioResult
from chaos.drill.scenarios import FaultTarget
from connector.ca._openbao import DEFAULT_PATIENCE_S

__all__ = ["DrillLab", "DrillSettings", "LabWedgedError", "Progress"]


class LabWedgedError(RuntimeError):
    """The lab never came back to a steady state: later rounds would measure nothing."""


class DrillLab(FaultTarget, Protocol):
    """The lab as the engine uses it."""

    def connector_members(self) -> list[str]: ...
    def members_out_of_line(self) -> set[str]: ...
    def snapshot(self) -> Snapshot: ...
    def wait_whole(self, timeout: float) -> None: ...
    def placed(self, connector: str) -> bool: ...
    def key_pools_full(self, connectors: list[str]) -> bool: ...
    def dump_stacks(self, name: str) -> Path | None: ...
    def ca_certificates(self) -> list[CaCertificate]: ...


@dataclass
class DrillSettings:
    session_timeout: float = 1.0
    recover_timeout: float = 20.0
    settle_timeout: float = 30.0
    drain_timeout: float = 45.0
    burst: int = 2
    # After a blocking fault, leaders may still finish what they started within
    # this grace (the leader suspends at once; in-flight calls complete).
    blocking_grace: float = 0.5
    # ca-node-loss: the connectors' failover_patience_s for an electing CA cluster;
    # a certificate from the other CA sooner than this after the fault is a violation.
    ca_patience_s: float = DEFAULT_PATIENCE_S
    # Scenarios with a late check: how long after the round settled a late
    # certificate may still wait for its revocation (the connectors' late watch
    # sweeps every few seconds once the CA's circuit closes again).
    late_timeout: float = 30.0


@dataclass
class Progress:
    """What the live view shows; updated by the engine as it goes."""

    scenario: str = ""
    round: int = 0
    rounds: int = 0
    phase: str = ""
    last: RoundResult | None = None
    results: list[ScenarioResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
