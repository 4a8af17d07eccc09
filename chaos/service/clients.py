"""Python clients for the admin/read API and for a simulated device (workloads, drills, tests).

    admin = AdminClient(svc.url, token=None)
    admin.create_profile("vpn", key_type="rsa2048", validity_days=30)
    admin.create_user("ann", "Ann", "ann@corp.test", "ann@corp.test")
    admin.create_group("staff", "Staff"); admin.add_member("staff", "ann")
    creds = admin.create_device("dev-1", "ann")          # management key, returned once
    admin.create_assignment("vpn-staff", "vpn", "staff") # queues the requests
    admin.action("retire-admin", device_id="dev-1")      # one row of the revocation table

    device = DeviceClient(svc.url, creds)
    result = device.sync()    # check in, open each PFX with the management key, report
    result.installed          # [InstalledPfx(request_id, serial, certificate, key, chain)]
    result.deleted            # serials the service told the device to delete
    device.store, device.history   # profile -> key in use; serial -> decrypt-only old keys

Refusals raise :class:`ApiRefused` (status + reason); transport failures are httpx's.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from connector.pki.envelope import open_envelope
from connector.pki.pfx import read_pfx

__all__ = [
    "AdminClient",
    "ApiRefused",
    "DeviceClient",
    "DeviceCredentials",
    "InstalledPfx",
    "SyncResult",
]


class ApiRefused(Exception):  # noqa: N818 - a refusal, not a failure of ours
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            reason = str(response.json().get("detail"))
        except ValueError:
            reason = response.text[:300]
        raise ApiRefused(response.status_code, reason)
    return response.json() if response.content else None


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: str
    certificate_pem: str
    key_pem: str | None = field(repr=False)  # None when the caller brought its own key


class AdminClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        verify: Any = True,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, transport=transport, timeout=timeout, verify=verify
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return _json(self._http.post("/api/v1/admin" + path, json=body))

    # -- directory and targeting --------------------------------------------------

    def create_profile(self, profile_id: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/profiles", {"id": profile_id, **fields})
        return result

    def create_user(self, user_id: str, name: str, upn: str, email: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(
            "/users", {"id": user_id, "name": name, "upn": upn, "email": email}
        )
        return result

    def create_group(self, group_id: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/groups", {"id": group_id, "name": name})
        return result

    def add_member(self, group_id: str, user_id: str) -> int:
        """Returns how many certificate requests this queued."""
        return int(
            self._post(f"/groups/{group_id}/members", {"user_id": user_id})["requests_queued"]
        )

    def create_device(
        self, device_id: str, user_id: str, public_key_pem: str | None = None
    ) -> DeviceCredentials:
        body: dict[str, Any] = {"id": device_id, "user_id": user_id}
        if public_key_pem is not None:
            body["public_key_pem"] = public_key_pem
        made = self._post("/devices", body)
        return DeviceCredentials(
            device_id, made["management_certificate_pem"], made["management_key_pem"]
        )

    def create_assignment(self, assignment_id: str, profile_id: str, group_id: str) -> int:
        """Returns how many certificate requests this queued."""
        made = self._post(
            "/assignments", {"id": assignment_id, "profile_id": profile_id, "group_id": group_id}
        )
        return int(made["requests_queued"])

    def set_mode(self, mode: str) -> None:
        _json(self._http.put("/api/v1/admin/mode", json={"mode": mode}))

    def action(self, event: str, **body: str) -> dict[str, Any]:
        """One row of the revocation table, e.g. ``action("block", device_id="d1")``."""
        result: dict[str, Any] = self._post(f"/actions/{event}", dict(body))
        return result

    def renewal_scan(self, as_of: dt.datetime | None = None) -> int:
        body = {"as_of": as_of.isoformat()} if as_of is not None else {}
        return int(self._post("/renewal-scan", body)["requests_queued"])

    # -- read API -------------------------------------------------------------------

    def _read(self, what: str, **params: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _json(self._http.get(f"/api/v1/read/{what}", params=params))
        return rows

    def certificates(self, **filters: str) -> list[dict[str, Any]]:
        return self._read("certificates", **filters)

    def requests(self, **filters: str) -> list[dict[str, Any]]:
        return self._read("requests", **filters)

    def revocations(self, **filters: str) -> list[dict[str, Any]]:
        return self._read("revocations", **filters)

    def connectors(self) -> list[dict[str, Any]]:
        return self._read("connectors")

    def stale_rejections(self) -> list[dict[str, Any]]:
        return self._read("stale-rejections")

    def user_copies(self, **filters: str) -> list[dict[str, Any]]:
        """Each device's copy of each user-scoped certificate."""
        return self._read("user-copies", **filters)

    def revocation_table(self, scope: str = "device") -> list[dict[str, Any]]:
        return self._read("revocation-table", scope=scope)


@dataclass(frozen=True)
class InstalledPfx:
    request_id: str
    profile_id: str
    serial: int
    certificate: x509.Certificate
    key: PrivateKeyTypes = field(repr=False)
    chain: tuple[x509.Certificate, ...]
    usage: str = "current"  # or "decrypt-only": an older key of a user-scoped certificate
    scope: str = "device"


@dataclass
class SyncResult:
    installed: list[InstalledPfx] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (request_id, why)
    deleted: list[int] = field(default_factory=list)  # serials


def load_client_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """Present ``cert_pem``/``key_pem`` from ``context`` (ssl loads only from files: a
    private 0600 file in a private directory, removed at once)."""
    with tempfile.TemporaryDirectory(prefix="pfxha-client-") as directory:
        path = os.path.join(directory, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key_pem + "\n" + cert_pem)
        context.load_cert_chain(path)


class DeviceClient:
    """A device: checks in, opens each PFX with its management key, reports back."""

    def __init__(
        self,
        base_url: str,
        credentials: DeviceCredentials,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        verify: Any = True,
    ) -> None:
        if credentials.key_pem is None:
            raise ValueError("a DeviceClient needs the device's management private key")
        self.device_id = credentials.device_id
        self._cert = x509.load_pem_x509_certificate(credentials.certificate_pem.encode())
        key = serialization.load_pem_private_key(credentials.key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("device management keys are RSA")
        self._key = key
        if isinstance(verify, ssl.SSLContext):
            # Mutual TLS: the device proves itself with its management key.
            load_client_certificate(verify, credentials.certificate_pem, credentials.key_pem)
        self._http = httpx.Client(
            base_url=base_url, transport=transport, timeout=timeout, verify=verify
        )
        self.store: dict[str, InstalledPfx] = {}  # profile id -> what is installed
        # serial -> an older key of a user-scoped certificate, kept to decrypt old mail
        self.history: dict[int, InstalledPfx] = {}

    def close(self) -> None:
        self._http.close()

    def checkin(self) -> dict[str, Any]:
        result: dict[str, Any] = _json(self._http.post(f"/api/v1/devices/{self.device_id}/checkin"))
        return result

    def report(self, request_id: str, status: str, reason: str | None = None) -> None:
        body: dict[str, Any] = {"request_id": request_id, "status": status}
        if reason is not None:
            body["reason"] = reason
        _json(self._http.post(f"/api/v1/devices/{self.device_id}/report", json=body))

    def open(self, delivery: dict[str, Any]) -> InstalledPfx:
        pfx = open_envelope(base64.b64decode(delivery["envelope_b64"]), self._cert, self._key)
        # The stand-in device shares the machine with the system under test, so it
        # reads the PFX the cheap way; the drill's checker opens every delivered PFX
        # with OpenSSL's full checks afterwards.
        key, cert, chain = read_pfx(pfx)
        return InstalledPfx(
            request_id=delivery["request_id"],
            profile_id=delivery["profile_id"],
            serial=int(delivery["serial"]),
            certificate=cert,
            key=key,
            chain=tuple(chain),
            usage=str(delivery.get("usage", "current")),
            scope=str(delivery.get("scope", "device")),
        )

    def sync(self) -> SyncResult:
        """One check-in: install every delivery, delete what the service says, report all."""
        answer = self.checkin()
        result = SyncResult()
        for delivery in answer["deliveries"]:
            try:
                installed = self.open(delivery)
            except ValueError as exc:  # EnvelopeError is a ValueError
                self.report(delivery["request_id"], "failed", str(exc)[:500])
                result.failed.append((delivery["request_id"], str(exc)))
                continue
            if installed.usage == "decrypt-only":
                self.history[installed.serial] = installed
                current = self.store.get(installed.profile_id)
                if current is not None and current.serial == installed.serial:
                    del self.store[installed.profile_id]
            else:
                self.store[installed.profile_id] = installed
            self.report(installed.request_id, "installed")
            result.installed.append(installed)
        for deletion in answer["deletions"]:
            current = self.store.get(deletion["profile_id"])
            if current is not None and current.serial == int(deletion["serial"]):
                del self.store[deletion["profile_id"]]
            self.history.pop(int(deletion["serial"]), None)
            self.report(deletion["request_id"], "deleted")
            result.deleted.append(int(deletion["serial"]))
        return result
