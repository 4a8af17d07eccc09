"""A stand-in for the connector's PKI in service tests: a tiny CA, PFX packing, device side."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from connector.pki.envelope import open_envelope, seal
from connector.service_client import CertificateRequest, RevocationTask, ServiceClient

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def new_key(key_type: str = "p256") -> PrivateKey:
    # EC keys keep the tests fast; the service accepts any key type.
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    return ec.generate_private_key(ec.SECP384R1() if key_type == "p384" else ec.SECP256R1())


@dataclass
class MiniCA:
    name: str = "test-issuing-ca"
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, public_key: object, device_id: str, *, days: int = 10, cn: str = "user"
    ) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, cn),
                        x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .sign(self.key, hashes.SHA256())
        )


def pack(key: PrivateKey, cert: x509.Certificate, ca: MiniCA) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"pfx", key, cert, [ca.cert], serialization.NoEncryption()
    )


@dataclass
class Issued:
    key: PrivateKey
    cert: x509.Certificate
    envelope: bytes


def issue_for(req: CertificateRequest, ca: MiniCA, kra: x509.Certificate, days: int = 10) -> Issued:
    key = new_key()
    cert = ca.issue(key.public_key(), req.device_id, days=days, cn=req.variables["UserName"])
    return Issued(key, cert, seal(pack(key, cert, ca), kra))


def open_delivery(
    envelope_b64: str, device_cert_pem: str, device_key_pem: str
) -> pkcs12.PKCS12KeyAndCertificates:
    """What a device does with a delivery: open with its management key, parse the PFX."""
    device_cert = x509.load_pem_x509_certificate(device_cert_pem.encode())
    device_key = serialization.load_pem_private_key(device_key_pem.encode(), password=None)
    assert isinstance(device_key, rsa.RSAPrivateKey)
    pfx = open_envelope(base64.b64decode(envelope_b64), device_cert, device_key)
    return pkcs12.load_pkcs12(pfx, None)


@dataclass
class World:
    """One user in one group, with devices, targeted by one profile."""

    profile: str
    user: str
    group: str
    assignment: str
    devices: dict[str, dict[str, str]]  # id -> {"cert": pem, "key": pem}


def build_world(
    admin: httpx.Client, unique: Callable[[str], str], *, devices: int = 1, **profile: object
) -> World:
    ids = {k: unique(k) for k in ("profile", "user", "group", "assignment")}
    ok(admin.post("/api/v1/admin/profiles", json={"id": ids["profile"], **profile}))
    ok(
        admin.post(
            "/api/v1/admin/users",
            json={
                "id": ids["user"],
                "name": f"User {ids['user']}",
                "upn": f"{ids['user']}@example.test",
                "email": f"{ids['user']}@example.test",
            },
        )
    )
    ok(admin.post("/api/v1/admin/groups", json={"id": ids["group"], "name": "staff"}))
    ok(admin.post(f"/api/v1/admin/groups/{ids['group']}/members", json={"user_id": ids["user"]}))
    made = {}
    for _ in range(devices):
        device_id = unique("dev")
        body = ok(
            admin.post("/api/v1/admin/devices", json={"id": device_id, "user_id": ids["user"]})
        )
        made[device_id] = {
            "cert": body["management_certificate_pem"],
            "key": body["management_key_pem"],
        }
    ok(
        admin.post(
            "/api/v1/admin/assignments",
            json={"id": ids["assignment"], "profile_id": ids["profile"], "group_id": ids["group"]},
        )
    )
    return World(ids["profile"], ids["user"], ids["group"], ids["assignment"], made)


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


class FakeConnector:
    """Plays the active connector with the real client and a MiniCA (no CFSSL needed)."""

    def __init__(self, client: ServiceClient, name: str, epoch: int) -> None:
        self.client, self.name, self.epoch = client, name, epoch
        self.ca = MiniCA()
        self.kra = client.kra_certificate()
        client.register(name, epoch)

    def issue(self, device_ids: Collection[str], days: int = 10) -> dict[str, Issued]:
        """Issue whatever is polled (like a connector) until every listed device has a
        certificate from this call; returns device -> Issued for the listed devices."""
        done: dict[str, Issued] = {}
        for _ in range(20):
            for req in self.client.poll_requests(self.name, self.epoch, 500, 0):
                issued = issue_for(req, self.ca, self.kra, days=days)
                self.client.record_intent(self.name, self.epoch, req.id, public_pem(issued.key))
                self.client.upload_result(
                    self.name,
                    self.epoch,
                    req.id,
                    issued.envelope,
                    issued.cert.serial_number,
                    self.ca.name,
                )
                done[req.device_id] = issued
            if set(done) >= set(device_ids):
                return {d: done[d] for d in device_ids}
        raise AssertionError(f"requests for {sorted(set(device_ids) - set(done))} never came")

    def revocations(self) -> list[RevocationTask]:
        return self.client.poll_revocations(self.name, self.epoch, 500)

    def confirm(self, task: RevocationTask) -> None:
        self.client.confirm_revocation(self.name, self.epoch, task.id)


def install(
    admin: httpx.Client, world: World, connector: FakeConnector, days: int = 10
) -> dict[str, Issued]:
    """Issue, deliver and install one certificate on every device of ``world``."""
    issued = connector.issue(list(world.devices), days=days)
    for device_id, device in world.devices.items():
        checkin = ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))
        (delivery,) = checkin["deliveries"]
        pfx = open_delivery(delivery["envelope_b64"], device["cert"], device["key"])
        assert pfx.cert is not None
        assert pfx.cert.certificate == issued[device_id].cert
        ok(
            admin.post(
                f"/api/v1/devices/{device_id}/report",
                json={"request_id": delivery["request_id"], "status": "installed"},
            )
        )
    return issued
