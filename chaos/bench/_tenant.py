"""A small tenant on the stand-in service, and devices that check in and open their PFX.

    tenant = Tenant(admin_client, prefix="t1", template="user-auth", key_type="p256")
    tenant.create_profile()                 # profile + group + assignment
    devices = tenant.enroll(5)              # users + memberships + devices: 5 requests queued
    got = checkin(device_client, devices[0])   # [(request_id, serial, key, cert, chain)]

Device management keys are made here (RSA, as CMS key transport needs) and
given to the service, so enrolling many devices costs the service no key
generation; devices of one tenant share one key pair unless asked otherwise.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.pki import open_envelope, read_pfx

__all__ = ["Delivered", "Device", "Tenant", "checkin", "report"]


@dataclass(frozen=True)
class Device:
    id: str
    user_id: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate


@dataclass(frozen=True)
class Delivered:
    request_id: str
    serial: int
    key: Any
    certificate: x509.Certificate
    chain: list[x509.Certificate]


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    body = response.json()
    return body if isinstance(body, dict) else {"items": body}


class Tenant:
    def __init__(
        self,
        admin: httpx.Client,
        *,
        prefix: str,
        template: str = "user-auth",
        key_type: str = "p256",
        shared_device_key: bool = True,
    ) -> None:
        self.admin = admin
        self.prefix = prefix
        self.template = template
        self.key_type = key_type
        self.profile_id = f"{prefix}-profile"
        self.group_id = f"{prefix}-group"
        self._shared_key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if shared_device_key
            else None
        )
        self._count = 0

    def create_profile(self, *, assign: bool = True) -> None:
        """Profile and group; with ``assign`` the profile is assigned to the group now."""
        _check(
            self.admin.post(
                "/api/v1/admin/profiles",
                json={
                    "id": self.profile_id,
                    "key_type": self.key_type,
                    "template": self.template,
                    "validity_days": 365,
                    "renewal_threshold_percent": 20,
                    "subject_template": "CN={{UserName}}",
                    "san_templates": [
                        "email={{EmailAddress}}",
                        "URI=IntuneDeviceId://{{DeviceId}}",
                    ],
                },
            )
        )
        _check(
            self.admin.post(
                "/api/v1/admin/groups", json={"id": self.group_id, "name": self.group_id}
            )
        )
        if assign:
            self.assign()

    def assign(self) -> None:
        """Assign the profile to the group: every member's device becomes due at once."""
        _check(
            self.admin.post(
                "/api/v1/admin/assignments",
                json={
                    "id": f"{self.prefix}-assign",
                    "profile_id": self.profile_id,
                    "group_id": self.group_id,
                },
            )
        )

    def join_group(self, user_id: str) -> None:
        _check(
            self.admin.post(
                f"/api/v1/admin/groups/{self.group_id}/members", json={"user_id": user_id}
            )
        )

    def enroll(self, count: int, *, join_group: bool = True) -> list[Device]:
        """``count`` users with one device each; ``join_group``: in the group (a request each)."""
        devices = []
        for _ in range(count):
            self._count += 1
            user = f"{self.prefix}-u{self._count}"
            _check(
                self.admin.post(
                    "/api/v1/admin/users",
                    json={"id": user, "name": user, "upn": f"{user}@lab", "email": f"{user}@lab"},
                )
            )
            key = self._shared_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            body = _check(
                self.admin.post(
                    "/api/v1/admin/devices",
                    json={"id": f"{user}-d", "user_id": user, "public_key_pem": pem.decode()},
                )
            )
            if join_group:
                self.join_group(user)
            cert = x509.load_pem_x509_certificate(body["management_certificate_pem"].encode())
            devices.append(Device(f"{user}-d", user, key, cert))
        return devices

    def requests(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        rows = self.admin.get("/api/v1/read/requests", params=params).json()
        prefix = f"{self.prefix}-u"
        return [r for r in rows if str(r["device_id"]).startswith(prefix)]


def checkin(client: httpx.Client, device: Device) -> list[Delivered]:
    """Check in; open every delivered PFX with the device's management key."""
    body = _check(client.post(f"/api/v1/devices/{device.id}/checkin"))
    out = []
    for item in body["deliveries"]:
        blob = base64.b64decode(item["envelope_b64"])
        pfx = open_envelope(blob, device.certificate, device.key)
        # Real devices are other machines: the stand-in reads the PFX the cheap way
        # (read_pfx proves the key) so its CPU does not count against the flow.
        key, cert, chain = read_pfx(pfx)
        out.append(Delivered(item["request_id"], int(item["serial"]), key, cert, chain))
    return out


def report(client: httpx.Client, device: Device, request_id: str, status: str) -> None:
    _check(
        client.post(
            f"/api/v1/devices/{device.id}/report",
            json={"request_id": request_id, "status": status},
        )
    )
