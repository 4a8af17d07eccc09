"""Key recovery through the real service: a user's escrow, sealed to a recovery agent.

One service with an admin token and a small rate limit for the module; the
connector is :class:`FakeConnector`. The recovered envelope is opened with
``openssl cms -decrypt`` as a recovery agent would.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from chaos.launch.service import ServiceProcess
from connector.pki.envelope import open_envelope
from connector.service_client import ServiceClient
from tests.fixtures.certs import key_pem, pem, rsa_key, self_signed
from tests.fixtures.service import unique
from tests.integration.service.helpers import ok
from tests.integration.service.test_user_scope import Tenant

LIMIT = 3


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        tmp_path_factory.mktemp("recovery"),
        admin_token=secrets.token_urlsafe(24),
        extra_args=["--renewal-interval", "0", "--key-recovery-limit", str(LIMIT)],
    )
    svc.start()
    yield svc
    svc.stop(grace=5)


@pytest.fixture(scope="module")
def admin(guarded: ServiceProcess) -> Iterator[httpx.Client]:
    with guarded.admin_client() as client:
        yield client


@pytest.fixture(scope="module")
def agent() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa_key()
    return key, self_signed(key, "key recovery agent")


def recover(admin: httpx.Client, user: str, cert_pem: str, **extra: str) -> httpx.Response:
    body = {"recovery_agent_certificate_pem": cert_pem, "reason": "ticket 42", **extra}
    return admin.post(f"/api/v1/admin/users/{user}/key-recovery", json=body)


def recoveries(admin: httpx.Client) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = ok(
        admin.get("/api/v1/read/events", params={"kind": "key-recovered"})
    )
    return rows


@pytest.fixture(scope="module")
def rolled(guarded: ServiceProcess, admin: httpx.Client) -> Iterator[tuple[Tenant, int, int]]:
    """A user with two devices whose certificate was rolled over once: (tenant, old, new)."""
    with ServiceClient(guarded.url) as client:
        tenant = Tenant(guarded, admin, client, devices=2)
        old = tenant.issue()
        tenant.sync_all()
        lost = next(iter(tenant.devices))
        ok(admin.post("/api/v1/admin/actions/retire-admin", json={"device_id": lost}))
        tenant.devices.pop(lost).close()
        new = tenant.issue()
        tenant.sync_all()
        yield tenant, old, new
        for device in tenant.devices.values():
            device.close()


def test_recovery_returns_current_and_history_sealed_to_the_agent_and_is_audited(
    rolled: tuple[Tenant, int, int],
    agent: tuple[rsa.RSAPrivateKey, x509.Certificate],
    tmp_path: Path,
) -> None:
    tenant, old, new = rolled
    key, cert = agent
    before = len(recoveries(tenant.admin))
    answer = ok(recover(tenant.admin, tenant.world.user, pem(cert)))
    assert {(k["serial"], k["escrow"]) for k in answer["keys"]} == {
        (str(old), "history"),
        (str(new), "current"),
    }
    (device,) = tenant.devices.values()
    held = {new: device.store[tenant.world.profile], old: device.history[old]}
    for item in answer["keys"]:
        blob = base64.b64decode(item["envelope_b64"])
        pfx = pkcs12.load_pkcs12(open_envelope(blob, cert, key), None)
        assert pfx.cert is not None
        assert pfx.key is not None
        assert pfx.cert.certificate.serial_number == int(item["serial"])
        assert pfx.key.private_numbers() == held[int(item["serial"])].key.private_numbers()  # type: ignore[union-attr]
    # The recovery agent's own tools open it (OpenSSL CMS), and no one else's key does.
    (tmp_path / "agent.key").write_bytes(key_pem(key))
    (tmp_path / "agent.pem").write_text(pem(cert))
    (tmp_path / "in.p7m").write_bytes(base64.b64decode(answer["keys"][0]["envelope_b64"]))
    opened = subprocess.run(
        ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(tmp_path / "in.p7m"),
         "-recip", str(tmp_path / "agent.pem"), "-inkey", str(tmp_path / "agent.key")],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert pkcs12.load_pkcs12(opened.stdout, None).key is not None
    audit = recoveries(tenant.admin)
    assert len(audit) == before + 1
    assert audit[-1]["subject"] == tenant.world.user
    assert audit[-1]["detail"] == {
        "reason": "ticket 42",
        "recovery_agent_sha256": answer["recovery_agent_sha256"],
        "recovery_agent_subject": "CN=key recovery agent",
        "serials": [k["serial"] for k in answer["keys"]],
    }


def test_bad_input_is_refused_with_a_reason_and_changes_nothing(
    rolled: tuple[Tenant, int, int], agent: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    tenant, _, _ = rolled
    admin, user = tenant.admin, tenant.world.user
    good = pem(agent[1])
    ec_key = ec.generate_private_key(ec.SECP256R1())
    signing_only = self_signed(ec_key, "not for encryption")
    before = recoveries(admin)
    without_escrow = unique("user")
    ok(
        admin.post(
            "/api/v1/admin/users",
            json={"id": without_escrow, "name": "n", "upn": "n@x.test", "email": "n@x.test"},
        )
    )
    cases = [
        (recover(admin, unique("nobody"), good), 404, "unknown user"),
        (recover(admin, without_escrow, good), 404, "no escrowed key"),
        (recover(admin, user, good, profile_id=unique("p")), 404, "no escrowed key for profile"),
        (recover(admin, user, "garbage"), 400, "exactly one PEM certificate"),
        (recover(admin, user, pem(signing_only)), 400, "not an encryption certificate"),
        (admin.post(f"/api/v1/admin/users/{user}/key-recovery", json={}), 422, "missing"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in str(response.json()["detail"])
    anonymous = httpx.post(
        f"{tenant.service.url}/api/v1/admin/users/{user}/key-recovery",
        json={"recovery_agent_certificate_pem": good, "reason": "x"},
    )
    assert anonymous.status_code == 401
    assert recoveries(admin) == before


def test_recoveries_beyond_the_limit_wait_with_retry_after(
    rolled: tuple[Tenant, int, int], agent: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    tenant, _, _ = rolled
    used = len(recoveries(tenant.admin))
    for _ in range(LIMIT - used):
        ok(recover(tenant.admin, tenant.world.user, pem(agent[1])))
    refused = recover(tenant.admin, tenant.world.user, pem(agent[1]))
    assert refused.status_code == 429
    assert "--key-recovery-limit 3" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) > 0
    assert len(recoveries(tenant.admin)) == LIMIT  # the refusal is not counted
