"""The device side of the workload: what a device holds, its check-in, the check-in rounds.

    device = Device(device_id, user_id, management_certificate, key, requests=["r1"])
    check_in(device, post=post, requests_of=requests_of, history=history, root=root)
    device.installed          # {"r1"} once the service delivered r1's PFX
    # post(path, body) -> the service's JSON answer; raises httpx.HTTPError on >= 400

    # the workload's check-in thread, until stop.set(): due devices, 4 at a time
    checkin_rounds(workload.pending_devices, workload.checkin,
                   workers=4, interval_s=0.2, stop=stop)

Each device receives its PFX sealed to its management key, opens it the way a
device would (:func:`chaos.checkers.verify_delivered_pfx`), records the
outcome and reports ``installed`` (``failed``, with the reason, when it does
not open); a certificate to delete is reported ``deleted``. The check-in is
one invoke / ok / fail in the history, under the device's process.

Nothing here takes a lock: a device's ``installed`` and ``requests`` change
only in its own check-in, and :func:`checkin_rounds` checks a device in at
most once per round.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from chaos.checkers.ops import CHECKIN, device_process
from chaos.checkers.pfx import verify_delivered_pfx
from chaos.history import History

__all__ = ["Device", "check_in", "checkin_rounds"]

# The workload's logger: these lines read as the workload's, as they did before the split.
log = logging.getLogger("chaos.workload")


@dataclass
class Device:
    id: str
    user: str
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    requests: list[str] = field(default_factory=list)
    installed: set[str] = field(default_factory=set)
    retired: bool = False


def check_in(
    device: Device,
    *,
    post: Callable[[str, dict[str, Any] | None], dict[str, Any]],
    requests_of: Callable[[str], list[str]],
    history: History,
    root: x509.Certificate,
) -> None:
    """One check-in of ``device``: collect, open and report what the service holds for it."""
    process = device_process(device.id)
    op = history.invoke(process, CHECKIN, {"device": device.id})
    try:
        body = post(f"/api/v1/devices/{device.id}/checkin", None)
    except httpx.HTTPError as exc:
        history.complete(op, "fail", {"device": device.id, "error": str(exc)})
        return
    delivered: list[dict[str, Any]] = []
    for item in body.get("deliveries", []):
        blob = base64.b64decode(item["envelope_b64"])
        # A user-scoped certificate names the user, shared by all of their devices.
        subject = device.user if item.get("scope") == "user" else device.id
        problems = verify_delivered_pfx(
            blob, device.certificate, device.key, root, device_id=subject
        )
        delivered.append(
            {
                "request": item["request_id"],
                "serial": item["serial"],
                "scope": item.get("scope", "device"),
                "usage": item.get("usage", "current"),
                "pfx_ok": not problems,
                "pfx_errors": problems,
            }
        )
        status = "installed" if not problems else "failed"
        report: dict[str, Any] = {"request_id": item["request_id"], "status": status}
        if problems:
            report["reason"] = "; ".join(problems)[:900]
        try:
            post(f"/api/v1/devices/{device.id}/report", report)
        except httpx.HTTPError as exc:
            log.warning("report for %s failed: %s", item["request_id"], exc)
        device.installed.add(item["request_id"])
    for item in body.get("deletions", []):
        try:
            post(
                f"/api/v1/devices/{device.id}/report",
                {"request_id": item["request_id"], "status": "deleted"},
            )
        except httpx.HTTPError as exc:
            log.warning("deletion report for %s failed: %s", item["request_id"], exc)
    # Renewals or re-issues add requests; learn them from the service.
    known = set(requests_of(device.id))
    device.requests = sorted(known | set(device.requests))
    history.complete(op, "ok", {"device": device.id, "delivered": delivered})


def checkin_rounds(
    pending: Callable[[], list[Device]],
    checkin: Callable[[Device], None],
    *,
    workers: int,
    interval_s: float,
    stop: threading.Event,
) -> None:
    """Every device with something due checks in, ``workers`` at a time; each
    device at most once per round (its state is its own thread's meanwhile).

    ``pending`` names the devices due each round, ``interval_s`` apart, until ``stop``.
    """

    def checkin_unless_stopped(device: Device) -> None:
        if not stop.is_set():
            checkin(device)

    with ThreadPoolExecutor(workers, thread_name_prefix="workload-checkin") as pool:
        while not stop.is_set():
            futures = [pool.submit(checkin_unless_stopped, d) for d in pending()]
            for future in futures:
                try:
                    future.result()
                except Exception:  # one device's surprise must not stop the others
                    log.exception("check-in failed")
            stop.wait(interval_s)
