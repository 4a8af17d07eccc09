"""SIGHUP: every CA re-reads its auth material, without a restart (issue 17).

    specs = {ca.name: ca.as_spec() for ca in config.cas}
    outcomes = reload_ca_auth(runtime.router, specs)   # what the signal handler runs

Each ``[[ca]]`` re-reads the files its configuration names (CFSSL: the auth key
and the mutual-TLS client pair; OpenBao: the AppRole role-id and secret-id) and
swaps them in only when they pass the checks of :mod:`connector.ca._reload`.
One event per CA: 1040 ``ca_auth_reloaded`` with the settings re-read, or 1041
``ca_auth_reload_refused`` naming the setting and why (the CA keeps what it had).
The signal handler only starts a thread: a handler runs between two bytecodes of
the main thread, which may hold a lock the reload needs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from connector.agent.events import Event, emit
from connector.ca import CARouter, ReloadOutcome
from connector.config import CASettings

__all__ = ["reload_ca_auth", "reload_in_background"]

log = logging.getLogger("pfxha.connector.reload")


def reload_ca_auth(router: CARouter, specs: Mapping[str, Mapping[str, Any]]) -> list[ReloadOutcome]:
    """Every CA re-reads its auth material (``specs``: name -> ``[[ca]]``); one event each."""
    outcomes = router.reload_auth(specs)
    for outcome in outcomes:
        if outcome.refused is not None:
            emit(
                log,
                Event.CA_AUTH_RELOAD_REFUSED,
                ca=outcome.ca,
                setting=f"ca[{outcome.ca}].{outcome.refused}",
                reason=outcome.reason,
                kept="the material in use before",
            )
        else:
            emit(log, Event.CA_AUTH_RELOADED, ca=outcome.ca, settings=list(outcome.settings))
    return outcomes


def reload_in_background(router: CARouter, cas: Sequence[CASettings]) -> threading.Thread:
    """Run :func:`reload_ca_auth` for ``cas`` on its own thread (what SIGHUP's handler does)."""

    def run() -> None:
        try:
            reload_ca_auth(router, {ca.name: ca.as_spec() for ca in cas})
        except Exception:  # a reload must never take the connector down
            log.exception("CA auth reload failed")

    thread = threading.Thread(target=run, name="pfxha-ca-auth-reload", daemon=True)
    thread.start()
    return thread
