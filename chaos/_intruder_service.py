"""The intruder's attacks on the service: no certificate, a self-signed one, a revoked
connector, forged epochs, and slow clients.

    results = service_attacks(service, ca_path, leader, epoch, workdir)
    results |= forged_epoch_attacks(service, ca_path, highest_epoch(service), workdir)
    results |= slow_client_attack(service)
    # {"no-cert poll": None, ..., "256 slow clients: /healthz": None}: None is refused

Each attack's outcome is a verdict of :mod:`chaos._intruder_refusals`. The
connectors enrolled for the revoked and forging attacks are revoked again by
the admin before the attack returns; the slow connections are closed.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from chaos._intruder_refusals import BOUND, BUDGET, FAR, refused_by_service, refused_by_tls
from chaos.launch.service import ServiceProcess, self_signed_loopback
from connector.identity import enroll
from connector.service_client import ServiceClient

__all__ = [
    "SLOW_CLIENTS",
    "forged_epoch_attacks",
    "highest_epoch",
    "service_attacks",
    "slow_client_attack",
    "slow_connections",
]

SLOW_CLIENTS = 256


def service_attacks(
    service: ServiceProcess, ca: Path, leader: str, epoch: int, workdir: Path
) -> dict[str, str | None]:
    results: dict[str, str | None] = {}
    high = epoch + FAR
    with ServiceClient(service.url, verify=str(ca), timeout=5.0) as rogue:
        results["no-cert register as rogue"] = refused_by_service(
            lambda: rogue.register("rogue", high), (401,)
        )
        results["no-cert register as the leader"] = refused_by_service(
            lambda: rogue.register(leader, high), (401,)
        )
        results["no-cert poll"] = refused_by_service(
            lambda: rogue.poll_requests(leader, epoch, 10, 0.0), (401,)
        )
        results["no-cert upload"] = refused_by_service(
            lambda: rogue.upload_result(leader, epoch, "r-1", b"junk", 1, "primary"), (401,)
        )
    cert, key = self_signed_loopback(workdir / "self-signed")
    with ServiceClient(service.url, verify=str(ca), cert=(cert, key), timeout=5.0) as forged:
        results["self-signed cert register"] = refused_by_tls(lambda: forged.register(leader, high))
    name = f"intruder-{secrets.token_hex(3)}"
    identity = enroll(service.url, service.enrollment_token(name), workdir / name, verify=str(ca))
    with service.admin_client() as admin:
        admin.post(
            f"/api/v1/admin/connectors/{name}/revoke", json={"reason": "drill: intruder"}
        ).raise_for_status()
    with ServiceClient(
        service.url, verify=str(ca), cert=identity.cert_pair, timeout=5.0
    ) as revoked:
        results["revoked register"] = refused_by_service(
            lambda: revoked.register(name, high), (403,)
        )
        results["revoked poll"] = refused_by_service(
            lambda: revoked.poll_requests(name, high, 10, 0.0), (403,)
        )
        results["revoked upload"] = refused_by_service(
            lambda: revoked.upload_result(name, high, "r-1", b"junk", 1, "primary"), (403,)
        )
    return results


def forged_epoch_attacks(
    service: ServiceProcess, ca: Path, highest: int, workdir: Path
) -> dict[str, str | None]:
    """A connector with a valid certificate (compromised) registers forged epochs."""
    name = f"forger-{secrets.token_hex(3)}"
    identity = enroll(service.url, service.enrollment_token(name), workdir / name, verify=str(ca))
    results: dict[str, str | None] = {}
    try:
        with ServiceClient(
            service.url, verify=str(ca), cert=identity.cert_pair, timeout=5.0
        ) as forger:
            results["forged epoch beyond the advance budget"] = refused_by_service(
                lambda: forger.register(name, highest + 16 * BUDGET), (403, 429)
            )
            results["forged epoch above the bound (2^48)"] = refused_by_service(
                lambda: forger.register(name, BOUND + 1), (422,)
            )
    finally:
        with service.admin_client() as admin:
            admin.post(
                f"/api/v1/admin/connectors/{name}/revoke", json={"reason": "drill: forger"}
            ).raise_for_status()
    return results


@contextlib.contextmanager
def slow_connections(url: str, count: int) -> Iterator[int]:
    """``count`` TLS connections that send half a request head and then nothing."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            raw = socket.create_connection((host, port), timeout=5.0)
            try:
                conn = context.wrap_socket(raw, server_hostname=host)
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            except OSError:
                raw.close()  # evicted or refused while we opened more: still an attempt
                continue
            opened.append(conn)
        yield len(opened)
    finally:
        for each in opened:
            with contextlib.suppress(OSError):
                each.close()


def slow_client_attack(service: ServiceProcess) -> dict[str, str | None]:
    with slow_connections(service.url, SLOW_CLIENTS), service.admin_client() as admin:
        try:
            ok = admin.get("/healthz", timeout=5.0).status_code == 200
        except httpx.HTTPError as exc:
            return {f"{SLOW_CLIENTS} slow clients: /healthz": f"starved: {exc!r}"}
    return {f"{SLOW_CLIENTS} slow clients: /healthz": None if ok else "not 200"}


def highest_epoch(service: ServiceProcess) -> int:
    with service.admin_client() as admin:
        for line in admin.get("/metrics").text.splitlines():
            if line.startswith("pfxha_service_highest_epoch "):
                return int(float(line.split()[1]))
    return -1
