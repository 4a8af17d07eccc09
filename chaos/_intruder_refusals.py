"""Did an intruder's call get refused? One verdict per gate: the service, its TLS, ZooKeeper.

    outcome = refused_by_service(lambda: rogue.register("rogue", high), (401,))
    outcome = refused_by_tls(lambda: forged.register(leader, high))
    outcome = refused_by_zookeeper(lambda: anonymous.delete("/pfxha/lab/leader"))
    # None: refused as it must be; else what happened instead ("accepted", "HTTP 500: ...")

Every attack of the ``intruder`` scenario (:mod:`chaos.intruder`) ends in one of
these verdicts (the CA's own is :func:`chaos._intruder_ca.refused_by_ca`): None is
the only good outcome, and any other is reported as is, so a violation says what
the gate did instead of refusing. The epochs the attacks forge are here too.
"""

from __future__ import annotations

from collections.abc import Callable

from kazoo.exceptions import NoAuthError

from connector.service_client import ServiceError, ServiceUnavailable

__all__ = [
    "BOUND",
    "BUDGET",
    "FAR",
    "refused_by_service",
    "refused_by_tls",
    "refused_by_zookeeper",
]

FAR = 1_000_000  # an epoch far above anything real
BOUND = 2**48  # chaos.service.rules.MAX_EPOCH
BUDGET = 65536  # the service's epoch-advance budget


def refused_by_service(call: Callable[[], object], statuses: tuple[int, ...]) -> str | None:
    """None when refused with one of ``statuses``; else what happened."""
    try:
        call()
    except ServiceError as exc:
        if exc.status in statuses:
            return None
        return f"HTTP {exc.status}: {exc.reason[:120]}"
    return "accepted"


def refused_by_tls(call: Callable[[], object]) -> str | None:
    try:
        call()
    except ServiceUnavailable as exc:
        return None if exc.status is None else f"HTTP {exc.status}"
    except ServiceError as exc:
        return f"HTTP {exc.status}: {exc.reason[:120]}"
    return "accepted"


def refused_by_zookeeper(call: Callable[[], object]) -> str | None:
    try:
        call()
    except NoAuthError:
        return None
    except Exception as exc:  # any other outcome is worth reporting as is
        return f"{type(exc).__name__}: {exc}"
    return "accepted"
