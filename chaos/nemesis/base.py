"""What every fault looks like to the drill: inject, then heal (the rollback).

    fault = ProcessFault("kill connector c2", inject=lab.kill_connector_fn("c2"),
                         heal=lab.start_connector_fn("c2"))
    details = fault.inject()      # returns facts for the history (pids, ports, ...)
    ...
    fault.heal()                  # idempotent; safe to call after a failed inject

Faults are plain objects over callables so the nemesis does not depend on
how the lab launches its processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CompositeFault", "Fault", "FaultError", "ProcessFault"]


class FaultError(RuntimeError):
    """A fault could not be injected or healed; the message says why."""


class Fault(Protocol):
    name: str

    def inject(self) -> dict[str, Any]: ...

    def heal(self) -> None: ...


@dataclass
class ProcessFault:
    """A fault made of two callables; ``heal`` runs at most once per ``inject``."""

    name: str
    inject_fn: Callable[[], dict[str, Any] | None]
    heal_fn: Callable[[], None] | None = None
    _injected: bool = field(default=False, init=False)

    def inject(self) -> dict[str, Any]:
        self._injected = True
        return dict(self.inject_fn() or {})

    def heal(self) -> None:
        if self._injected and self.heal_fn is not None:
            self._injected = False
            self.heal_fn()


@dataclass
class CompositeFault:
    """Several faults at once (e.g. connector and CA down together); heals in reverse."""

    name: str
    parts: Sequence[Fault]
    _done: list[Fault] = field(default_factory=list, init=False)

    def inject(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        for part in self.parts:
            details[part.name] = part.inject()
            self._done.append(part)
        return details

    def heal(self) -> None:
        errors: list[str] = []
        while self._done:
            part = self._done.pop()
            try:
                part.heal()
            except Exception as exc:  # heal every part even if one fails
                errors.append(f"{part.name}: {exc}")
        if errors:
            raise FaultError("heal failed: " + "; ".join(errors))
