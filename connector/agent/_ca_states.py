"""The CA router's record of its CAs, as the loop reads it: breaker words and certdb readiness.

    read_ca_states(deps)          # {"primary": "closed", "backup": "open"}; {} if the router fails
    read_reconcile_states(deps)   # {"primary": ReconcileState(...)}: can reconciliation search it
    ca_state_word("HALF-OPEN")    # "half_open": whatever the router gives, as one of three words

No I/O: both read what the router already knows, and mirror it into the
metrics (when there are any) on the way, so every snapshot and every health
check keeps the gauges current.
"""

from __future__ import annotations

from typing import Any

from connector.agent.state import ExecutorDeps
from connector.ca import ReconcileState

__all__ = ["ca_state_word", "read_ca_states", "read_reconcile_states"]


def ca_state_word(value: Any) -> str:
    """A breaker state as ``closed`` / ``open`` / ``half_open`` from whatever the router gives."""
    text = value if isinstance(value, str) else getattr(value, "state", None) or str(value)
    text = str(getattr(text, "value", text)).lower().replace("-", "_")
    return text if text in {"closed", "open", "half_open"} else "open"


def read_reconcile_states(deps: ExecutorDeps) -> dict[str, ReconcileState]:
    """Per CA, can reconciliation search it (the router's record: no I/O here)."""
    states_of = getattr(deps.issuer, "reconcile_states", None)
    if not callable(states_of):
        return {}
    try:
        states: dict[str, ReconcileState] = dict(states_of())
    except Exception as exc:  # a router that cannot say cannot vouch for its certdbs
        return {"*": ReconcileState("*", "certdb", False, f"unknown: {exc!r}")}
    if deps.metrics is not None:
        for name, state in states.items():
            deps.metrics.set_reconcile_state(name, ready=state.ready, off=state.mode == "off")
    return states


def read_ca_states(deps: ExecutorDeps) -> dict[str, str]:
    """Per CA, its breaker's word; empty when the router cannot say."""
    try:
        raw = deps.issuer.ca_states()
    except Exception:  # a router that cannot say is a router we do not trust
        return {}
    states = {name: ca_state_word(value) for name, value in raw.items()}
    if deps.metrics is not None:
        for name, word in states.items():
            deps.metrics.set_ca_state(name, up=word != "open", circuit=word)
    return states
