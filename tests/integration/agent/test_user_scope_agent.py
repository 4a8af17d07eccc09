"""A user-scoped S/MIME profile end to end: the real agent, CFSSL, the service, openssl.

One CA call for a user with three devices; every device's copy opens with
``openssl pkcs12`` and decrypts mail sent with ``openssl cms -encrypt`` to the
user's certificate; after a lost device (admin retire) the certificate is
revoked at the CA as keyCompromise, re-issued, and old mail still decrypts on
the remaining devices with the decrypt-only history key.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from chaos.launch.cfssl import CfsslLab
from chaos.launch.service import ServiceProcess
from chaos.service.clients import DeviceClient, DeviceCredentials
from connector.agent.loop import Agent
from tests.fixtures.certs import key_pem, pem, rsa_key, self_signed
from tests.fixtures.service import next_epoch, unique
from tests.integration.agent.test_agent_inprocess import (  # noqa: F401 - the fixture
    StubElector,
    make_agent,
    turn_until,
)
from tests.integration.service.helpers import ok


@pytest.fixture(scope="module")
def service(admin_service: ServiceProcess) -> ServiceProcess:
    """This module's service has an admin token: key recovery needs an admin credential."""
    return admin_service


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def ca_calls(cfssl: CfsslLab, subject: str) -> list[tuple[int, bool, int]]:
    """(serial, revoked, reason) of every certificate the CAs issued naming ``subject``."""
    out = []
    for name in cfssl.names:
        if name == "root":
            continue
        for record in cfssl.certdb(name).records():
            serials = record.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
            if serials and serials[0].value == subject:
                out.append((record.serial, record.revoked, record.reason))
    return out


def decrypt_on_device(
    device: DeviceClient, delivery: dict[str, Any], tmp: Path
) -> tuple[Path, x509.Certificate]:
    """What the device does, with openssl: open the envelope with its management key,
    read the PFX; returns the S/MIME private key it now holds (a PEM file) and its
    certificate."""
    management = tmp / f"{device.device_id}-mgmt"
    management.mkdir(exist_ok=True)
    key_pem = device._key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (management / "key.pem").write_bytes(key_pem)
    (management / "cert.pem").write_bytes(device._cert.public_bytes(serialization.Encoding.PEM))
    (management / "in.p7m").write_bytes(base64.b64decode(delivery["envelope_b64"]))
    pfx = openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(management / "in.p7m"),
        "-recip", str(management / "cert.pem"), "-inkey", str(management / "key.pem"),
    )  # fmt: skip
    info = openssl("pkcs12", "-info", "-passin", "pass:", "-noenc", stdin=pfx).decode()
    assert "PRIVATE KEY" in info
    smime_key = management / f"smime-{delivery['serial']}.pem"
    smime_key.write_bytes(openssl("pkcs12", "-nocerts", "-noenc", "-passin", "pass:", stdin=pfx))
    leaf = openssl("pkcs12", "-nokeys", "-clcerts", "-passin", "pass:", stdin=pfx)
    return smime_key, x509.load_pem_x509_certificate(leaf)


def mail_to(certificate: x509.Certificate, tmp: Path, text: bytes) -> Path:
    recipient = tmp / f"to-{certificate.serial_number}.pem"
    recipient.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    message = tmp / f"mail-{certificate.serial_number}.smime"
    message.write_bytes(openssl("cms", "-encrypt", "-aes256", str(recipient), stdin=text))
    return message


def reads(message: Path, key: Path) -> bytes:
    return openssl("cms", "-decrypt", "-in", str(message), "-inkey", str(key))


def test_one_ca_call_for_three_devices_smime_interop_and_rollover(
    make_agent: Callable[..., tuple[Agent, StubElector]],  # noqa: F811 - imported fixture
    admin: httpx.Client,
    service: ServiceProcess,
    cfssl_cas: CfsslLab,
    tmp_path: Path,
) -> None:
    agent, _ = make_agent(next_epoch(admin))
    profile, user, group = unique("smime"), unique("ann"), unique("staff")
    ok(
        admin.post(
            "/api/v1/admin/profiles",
            json={
                "id": profile,
                "scope": "user",
                "key_type": "rsa2048",
                "template": "user-auth",
                "subject_template": "CN={{UserName}}",
                "san_templates": ["email={{EmailAddress}}"],
            },
        )
    )
    email = f"{user}@corp.test"
    ok(
        admin.post(
            "/api/v1/admin/users", json={"id": user, "name": user, "upn": email, "email": email}
        )
    )
    ok(admin.post("/api/v1/admin/groups", json={"id": group, "name": "staff"}))
    ok(admin.post(f"/api/v1/admin/groups/{group}/members", json={"user_id": user}))
    devices = []
    for _ in range(3):
        device_id = unique("dev")
        made = ok(admin.post("/api/v1/admin/devices", json={"id": device_id, "user_id": user}))
        creds = DeviceCredentials(
            device_id, made["management_certificate_pem"], made["management_key_pem"]
        )
        devices.append(DeviceClient(service.url, creds))
    queued = ok(
        admin.post(
            "/api/v1/admin/assignments",
            json={"id": unique("as"), "profile_id": profile, "group_id": group},
        )
    )
    assert queued["requests_queued"] == 1  # one request for the user, not one per device

    def user_rows() -> list[dict[str, Any]]:
        rows = ok(admin.get("/api/v1/read/requests", params={"device_id": user}))
        assert isinstance(rows, list)
        return rows

    turn_until(agent, lambda: [r["state"] for r in user_rows()] == ["issued"])
    (issued,) = user_rows()
    old_serial = int(issued["serial"])
    assert ca_calls(cfssl_cas, user) == [(old_serial, False, 0)]  # one CA call, 3 devices

    old_keys = {}
    for device in devices:
        (delivery,) = device.checkin()["deliveries"]
        assert (delivery["scope"], delivery["usage"]) == ("user", "current")
        old_keys[device.device_id], old_cert = decrypt_on_device(device, delivery, tmp_path)
        assert old_cert.serial_number == old_serial
        device.report(delivery["request_id"], "installed")
    old_mail = mail_to(old_cert, tmp_path, b"before the phone was lost")
    for device in devices:  # the same key on every device: each copy opens the mail
        assert reads(old_mail, old_keys[device.device_id]) == b"before the phone was lost"

    # The phone is lost: admin retire. Revoked at the CA (keyCompromise), re-issued.
    lost, *rest = devices
    result = ok(
        admin.post("/api/v1/admin/actions/retire-admin", json={"device_id": lost.device_id})
    )
    assert (result["revocations_queued"], result["rollovers_queued"]) == (1, 1)

    def rolled_over() -> bool:
        rows = user_rows()
        return (
            any(r["kind"] == "rollover" and r["state"] == "issued" for r in rows)
            and all(r["revocation"] in (None, "done") for r in rows)
            and any(r["revocation"] == "done" for r in rows)
        )

    turn_until(agent, rolled_over)
    calls = ca_calls(cfssl_cas, user)
    assert len(calls) == 2  # the rollover was the second CA call, for all remaining devices
    assert (old_serial, True, 1) in calls  # RFC 5280 reason 1: keyCompromise
    (new_serial,) = [serial for serial, revoked, _ in calls if not revoked]

    for device in rest:
        held: dict[str, tuple[Path, x509.Certificate]] = {}
        for delivery in device.checkin()["deliveries"]:
            held[delivery["usage"]] = decrypt_on_device(device, delivery, tmp_path)
            device.report(delivery["request_id"], "installed")
        assert set(held) == {"current", "decrypt-only"}
        key, new_cert = held["current"]
        assert new_cert.serial_number == new_serial
        new_mail = mail_to(new_cert, tmp_path, b"after")
        assert reads(new_mail, key) == b"after"
        assert reads(old_mail, held["decrypt-only"][0]) == b"before the phone was lost"
    assert [d["serial"] for d in lost.checkin()["deletions"]] == [str(old_serial)]
    for device in devices:
        device.close()

    # Key recovery (admin): both escrowed keys, sealed to a recovery agent's certificate;
    # the agent opens them with openssl and reads the mail sent before and after the loss.
    agent_key = rsa_key()
    (tmp_path / "agent.key").write_bytes(key_pem(agent_key))
    (tmp_path / "agent.pem").write_text(pem(self_signed(agent_key, "recovery agent")))
    answer = ok(
        admin.post(
            f"/api/v1/admin/users/{user}/key-recovery",
            json={
                "recovery_agent_certificate_pem": (tmp_path / "agent.pem").read_text(),
                "reason": "legal hold",
            },
        )
    )
    mail = {
        str(old_serial): (old_mail, b"before the phone was lost"),
        str(new_serial): (new_mail, b"after"),
    }
    assert {(k["serial"], k["escrow"]) for k in answer["keys"]} == {
        (str(old_serial), "history"),
        (str(new_serial), "current"),
    }
    for item in answer["keys"]:
        sealed = tmp_path / f"recovered-{item['serial']}.p7m"
        sealed.write_bytes(base64.b64decode(item["envelope_b64"]))
        pfx = openssl(
            "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(sealed),
            "-recip", str(tmp_path / "agent.pem"), "-inkey", str(tmp_path / "agent.key"),
        )  # fmt: skip
        recovered = tmp_path / f"recovered-{item['serial']}.pem"
        recovered.write_bytes(
            openssl("pkcs12", "-nocerts", "-noenc", "-passin", "pass:", stdin=pfx)
        )
        message, text = mail[item["serial"]]
        assert reads(message, recovered) == text
