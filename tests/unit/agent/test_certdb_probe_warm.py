"""The certdb probe warms the certdbs' key index only while this member is a standby."""

from __future__ import annotations

from connector.agent.runtime import CertDBProbe
from connector.ca import ReconcileState


class Router:
    def __init__(self) -> None:
        self.warmed = 0

    def probe_certdbs(self) -> dict[str, ReconcileState]:
        return {"primary": ReconcileState("primary", "certdb", True, "ok")}

    def warm_certdbs(self) -> None:
        self.warmed += 1


def test_only_a_standby_warms_the_certdbs() -> None:
    router = Router()
    standby = True
    probe = CertDBProbe(router, interval_s=60, warm=lambda: standby)  # type: ignore[arg-type]
    probe.probe_once()
    assert router.warmed == 1
    standby = False  # a leader's own searches keep its index current
    probe.probe_once()
    assert router.warmed == 1


def test_by_default_nothing_is_warmed() -> None:
    router = Router()
    CertDBProbe(router, interval_s=60).probe_once()  # type: ignore[arg-type]
    assert router.warmed == 0
