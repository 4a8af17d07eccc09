"""Bodies of the device API: a check-in's deliveries and deletions, and a device's report.

    from chaos.service import models as m

    @router.post("/{device_id}/checkin", response_model=m.CheckinOut)
    def checkin(device_id: m.Id) -> m.CheckinOut: ...   # m.Delivery and m.Deletion in it

Importers use :mod:`chaos.service.models`, which re-exports every body.
"""

from __future__ import annotations

from typing import Literal

from chaos.service._model_base import Id, Reason, ScopeName, Strict, Usage

__all__ = [
    "CheckinOut",
    "Deletion",
    "Delivery",
    "ReportIn",
]


class Delivery(Strict):
    request_id: str  # what the device reports on (for scope "user": its copy's id)
    profile_id: str
    serial: str
    envelope_b64: str  # CMS EnvelopedData to the device's management certificate
    scope: ScopeName = "device"
    # current: use it; decrypt-only: an older key of the user, kept to open old mail
    usage: Usage = "current"


class Deletion(Strict):
    request_id: str
    profile_id: str
    serial: str
    scope: ScopeName = "device"


class CheckinOut(Strict):
    device_id: str
    state: str
    deliveries: list[Delivery]
    deletions: list[Deletion]


class ReportIn(Strict):
    request_id: Id
    status: Literal["installed", "failed", "deleted"]
    reason: Reason | None = None
