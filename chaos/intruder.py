"""The ``intruder`` drill scenario: callers that cannot prove who they are try to
take over, and must all be refused without disturbing the active connector.

    details = intrude(lab, leader)    # {"attempts": 13, "refused": 13, "attacks": {...}}

Attacks (each must fail):

* a rogue process **without a connector certificate** registers with an epoch
  far above the highest (as itself and as the leader), polls and uploads;
* a rogue with a **self-signed client certificate** registers (refused by TLS);
* a **revoked connector** (enrolled, then revoked by the admin) registers with
  a higher epoch, polls and uploads;
* a ZooKeeper client **without credentials** deletes ``/leader``, joins the
  election line, bumps ``/epoch``, writes a member node.

Afterwards ZooKeeper's leader and epoch and the service's highest epoch must be
unchanged. Any attempt that was not refused raises :class:`FaultError` (the
drill records it as a violation of the round).
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kazoo.exceptions import NoAuthError

from chaos.launch.service import ServiceProcess, self_signed_loopback
from chaos.nemesis import FaultError
from connector.identity import enroll
from connector.service_client import ServiceClient, ServiceError, ServiceUnavailable
from election import open_client, read_cluster_status

__all__ = ["intrude"]

_FAR = 1_000_000  # an epoch far above anything real


def _refused_by_service(call: Callable[[], object], statuses: tuple[int, ...]) -> str | None:
    """None when refused with one of ``statuses``; else what happened."""
    try:
        call()
    except ServiceError as exc:
        if exc.status in statuses:
            return None
        return f"HTTP {exc.status}: {exc.reason[:120]}"
    return "accepted"


def _refused_by_tls(call: Callable[[], object]) -> str | None:
    try:
        call()
    except ServiceUnavailable as exc:
        return None if exc.status is None else f"HTTP {exc.status}"
    except ServiceError as exc:
        return f"HTTP {exc.status}: {exc.reason[:120]}"
    return "accepted"


def _refused_by_zookeeper(call: Callable[[], object]) -> str | None:
    try:
        call()
    except NoAuthError:
        return None
    except Exception as exc:  # any other outcome is worth reporting as is
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


def _service_attacks(
    service: ServiceProcess, ca: Path, leader: str, epoch: int, workdir: Path
) -> dict[str, str | None]:
    results: dict[str, str | None] = {}
    high = epoch + _FAR
    with ServiceClient(service.url, verify=str(ca), timeout=5.0) as rogue:
        results["no-cert register as rogue"] = _refused_by_service(
            lambda: rogue.register("rogue", high), (401,)
        )
        results["no-cert register as the leader"] = _refused_by_service(
            lambda: rogue.register(leader, high), (401,)
        )
        results["no-cert poll"] = _refused_by_service(
            lambda: rogue.poll_requests(leader, epoch, 10, 0.0), (401,)
        )
        results["no-cert upload"] = _refused_by_service(
            lambda: rogue.upload_result(leader, epoch, "r-1", b"junk", 1, "primary"), (401,)
        )
    cert, key = self_signed_loopback(workdir / "self-signed")
    with ServiceClient(service.url, verify=str(ca), cert=(cert, key), timeout=5.0) as forged:
        results["self-signed cert register"] = _refused_by_tls(
            lambda: forged.register(leader, high)
        )
    name = f"intruder-{secrets.token_hex(3)}"
    identity = enroll(service.url, service.enrollment_token(name), workdir / name, verify=str(ca))
    with service.admin_client() as admin:
        admin.post(
            f"/api/v1/admin/connectors/{name}/revoke", json={"reason": "drill: intruder"}
        ).raise_for_status()
    with ServiceClient(
        service.url, verify=str(ca), cert=identity.cert_pair, timeout=5.0
    ) as revoked:
        results["revoked register"] = _refused_by_service(
            lambda: revoked.register(name, high), (403,)
        )
        results["revoked poll"] = _refused_by_service(
            lambda: revoked.poll_requests(name, high, 10, 0.0), (403,)
        )
        results["revoked upload"] = _refused_by_service(
            lambda: revoked.upload_result(name, high, "r-1", b"junk", 1, "primary"), (403,)
        )
    return results


def _zookeeper_attacks(hosts: str, cluster: str) -> dict[str, str | None]:
    base = f"/pfxha/{cluster}"
    with open_client(hosts) as anonymous:
        return {
            "zk delete /leader": _refused_by_zookeeper(lambda: anonymous.delete(f"{base}/leader")),
            "zk join the election": _refused_by_zookeeper(
                lambda: anonymous.create(
                    f"{base}/election/m-rogue-p99-", ephemeral=True, sequence=True
                )
            ),
            "zk bump /epoch": _refused_by_zookeeper(
                lambda: anonymous.set(f"{base}/epoch", str(_FAR).encode())
            ),
            "zk write a member": _refused_by_zookeeper(
                lambda: anonymous.create(f"{base}/members/rogue", b"{}", ephemeral=True)
            ),
        }


def _highest_epoch(service: ServiceProcess) -> int:
    with service.admin_client() as admin:
        for line in admin.get("/metrics").text.splitlines():
            if line.startswith("pfxha_service_highest_epoch "):
                return int(float(line.split()[1]))
    return -1


def intrude(lab: Any, leader: str) -> dict[str, Any]:
    """Run every attack against ``lab`` (a secure :class:`chaos.lab.lab.Lab`)."""
    if not getattr(lab, "secure", False) or lab.service is None or lab.service_ca is None:
        raise FaultError("the intruder scenario needs a secure lab (Lab(secure=True))")
    service: ServiceProcess = lab.service
    before = read_cluster_status(lab.zk.hosts, lab.cluster)
    if before.leader is None:
        raise FaultError("no leader to attack")
    service_epoch = _highest_epoch(service)
    with tempfile.TemporaryDirectory(prefix="pfxha-intruder-") as tmp:
        results = _service_attacks(
            service, Path(lab.service_ca), leader, before.leader.epoch, Path(tmp)
        )
    results.update(_zookeeper_attacks(lab.zk.hosts, lab.cluster))
    after = read_cluster_status(lab.zk.hosts, lab.cluster)
    disturbed: list[str] = []
    if after.leader is None or (after.leader.name, after.leader.epoch) != (
        before.leader.name,
        before.leader.epoch,
    ):
        disturbed.append(f"ZooKeeper leader changed: {before.leader} -> {after.leader}")
    if _highest_epoch(service) > max(service_epoch, before.leader.epoch):
        disturbed.append("the service's highest epoch moved past the real leader's")
    accepted = {attack: outcome for attack, outcome in results.items() if outcome is not None}
    if accepted or disturbed:
        raise FaultError(
            "intruder not refused: "
            + "; ".join([f"{a}: {o}" for a, o in accepted.items()] + disturbed)
        )
    return {"attempts": len(results), "refused": len(results), "attacks": sorted(results)}
