"""The escrow's admin features through the real service: key recovery and imported PFX.

One service with an admin token and a small key-recovery limit for the module;
the connector is :class:`FakeConnector`. Key recovery: a user's escrow sealed
to a recovery agent, opened with ``openssl cms -decrypt`` as the agent would.
Imported PFX: an admin's password-protected PFX for a user is sealed to the
KRA by ``pfxha service import-pfx`` (run in-process), delivered to every
device of the user like a user-scoped certificate, replaced by a newer import
(the old key stays decrypt-only), and removed from every device when the user
leaves the group, never revoked at a CA.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from chaos.checkers import Snapshot, check_user_scope
from chaos.checkers.state import ServiceDb
from chaos.launch.service import ServiceProcess
from chaos.service.clients import DeviceClient, DeviceCredentials
from chaos.service.import_cli import import_pfx, sealed_for_import
from connector.pki.envelope import open_envelope
from connector.service_client import ServiceClient
from tests.fixtures.certs import key_pem, pem, rsa_key, self_signed
from tests.fixtures.service import unique
from tests.integration.service.helpers import MiniCA, World, build_world, new_key, ok
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


# -- imported PFX ------------------------------------------------------------------


class Imports:
    """A user with two devices under an imported-PFX profile, and a CA outside pfxha."""

    def __init__(self, service: ServiceProcess, admin: httpx.Client, tmp: Path) -> None:
        self.service, self.admin, self.tmp = service, admin, tmp
        self.world: World = build_world(admin, unique, devices=2, scope="user", source="imported")
        self.ca = MiniCA("an enterprise CA pfxha does not run")
        self.devices = {
            d: DeviceClient(service.url, DeviceCredentials(d, made["cert"], made["key"]))
            for d, made in self.world.devices.items()
        }
        for name, secret in (("pass", "s3cret"), ("token", service.admin_token or "")):
            (tmp / name).write_text(secret + "\n")
            (tmp / name).chmod(0o600)

    def pfx_file(self, name: str) -> tuple[Path, x509.Certificate]:
        key = new_key()
        cert = self.ca.issue(key.public_key(), self.world.user, days=30, cn=name)
        path = self.tmp / f"{name}.p12"
        path.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"x", key, cert, [self.ca.cert], serialization.BestAvailableEncryption(b"s3cret")
            )
        )
        return path, cert

    def cli(self, pfx: Path, *extra: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            import_pfx,
            ["--url", self.service.url, "--user", self.world.user, "--profile",
             self.world.profile, "--pfx", str(pfx), "--admin-token-file",
             str(self.tmp / "token"), *extra],
        )  # fmt: skip
        return result.exit_code, result.output

    def requests(self) -> list[dict[str, object]]:
        rows = ok(self.admin.get("/api/v1/read/requests"))
        return [r for r in rows if r["user_id"] == self.world.user]


@pytest.fixture
def imports(guarded: ServiceProcess, admin: httpx.Client, tmp_path: Path) -> Iterator[Imports]:
    made = Imports(guarded, admin, tmp_path)
    yield made
    for device in made.devices.values():
        device.close()


def test_an_imported_pfx_reaches_every_device_and_a_newer_one_keeps_the_old_key(
    imports: Imports,
) -> None:
    assert imports.requests() == []  # nothing is ever requested from a CA for this profile
    first, first_cert = imports.pfx_file("ann-2025")
    code, output = imports.cli(first, "--password-file", str(imports.tmp / "pass"))
    assert code == 0, output
    assert f'"serial": "{first_cert.serial_number}"' in output
    for device in imports.devices.values():
        device.sync()
        held = device.store[imports.world.profile]
        assert (held.serial, held.scope, held.usage) == (
            first_cert.serial_number,
            "user",
            "current",
        )
        assert held.certificate == first_cert
    second, second_cert = imports.pfx_file("ann-2026")
    code, output = imports.cli(second, "--password-file", str(imports.tmp / "pass"))
    assert code == 0, output
    for device in imports.devices.values():
        device.sync()
        assert device.store[imports.world.profile].serial == second_cert.serial_number
        assert set(device.history) == {first_cert.serial_number}  # old mail still opens
    assert [(r["kind"], r["escrow"]) for r in imports.requests()] == [
        ("imported", "history"),
        ("imported", "current"),
    ]
    before = ok(imports.admin.get("/api/v1/read/revocations"))
    ok(
        imports.admin.post(
            "/api/v1/admin/actions/leave-group",
            json={"group_id": imports.world.group, "user_id": imports.world.user},
        )
    )
    for device in imports.devices.values():
        assert sorted(device.sync().deleted) == sorted(
            [first_cert.serial_number, second_cert.serial_number]
        )
        assert not device.store
        assert not device.history
    # Removed everywhere, but no revocation is sent to any CA for an imported PFX.
    assert ok(imports.admin.get("/api/v1/read/revocations")) == before
    assert {(r["escrow"], r["revocation"]) for r in imports.requests()} == {
        ("withdrawn", "not-at-ca")
    }
    audit = ok(
        imports.admin.get(
            "/api/v1/read/events", params={"kind": "pfx-imported", "subject": imports.world.user}
        )
    )
    assert [e["detail"]["serial"] for e in audit] == [
        str(first_cert.serial_number),
        str(second_cert.serial_number),
    ]


def test_bad_imports_are_refused_with_a_reason_and_change_nothing(imports: Imports) -> None:
    pfx, cert = imports.pfx_file("ann-bad")
    code, output = imports.cli(pfx)  # the password file forgotten
    assert code != 0
    assert "--password-file" in output
    kra = x509.load_pem_x509_certificate(
        ok(imports.admin.get("/api/v1/admin/kra-certificate"))["certificate_pem"].encode()
    )
    good = base64.b64encode(sealed_for_import(pfx.read_bytes(), b"s3cret", kra)).decode()
    stranger = self_signed(rsa_key(), "not the KRA")
    elsewhere = base64.b64encode(sealed_for_import(pfx.read_bytes(), b"s3cret", stranger))
    device_profile = ok(imports.admin.post("/api/v1/admin/profiles", json={"id": unique("p")}))
    path = f"/api/v1/admin/users/{imports.world.user}/imported-pfx"
    cases = [
        (path, {"profile_id": imports.world.profile, "envelope_b64": elsewhere.decode()}, 400,
         "does not open with the service's KRA key"),
        (path, {"profile_id": imports.world.profile, "envelope_b64": "@@"}, 400, "not base64"),
        (path, {"profile_id": device_profile["id"], "envelope_b64": good}, 400,
         "not an imported-PFX profile"),
        (path, {"profile_id": unique("p"), "envelope_b64": good}, 404, "unknown profile"),
        (f"/api/v1/admin/users/{unique('u')}/imported-pfx",
         {"profile_id": imports.world.profile, "envelope_b64": good}, 404, "unknown user"),
    ]  # fmt: skip
    for url, body, status, words in cases:
        response = imports.admin.post(url, json=body)
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]
    assert imports.requests() == []
    refused = imports.admin.post(
        "/api/v1/admin/profiles",
        json={"id": unique("p"), "scope": "device", "source": "imported"},
    )
    assert refused.status_code == 400
    assert "source=imported needs scope=user" in refused.json()["detail"]
    ok(imports.admin.post(path, json={"profile_id": imports.world.profile, "envelope_b64": good}))
    again = imports.admin.post(
        path, json={"profile_id": imports.world.profile, "envelope_b64": good}
    )
    assert again.status_code == 409
    assert str(cert.serial_number) in again.json()["detail"]


def test_a_lost_device_retires_an_imported_pfx_without_a_ca_call(imports: Imports) -> None:
    pfx, cert = imports.pfx_file("ann-lost")
    code, output = imports.cli(pfx, "--password-file", str(imports.tmp / "pass"))
    assert code == 0, output
    db = ServiceDb(imports.service.db_path)  # what the drill reads
    assert db.devices_due_user_copies() >= set(imports.devices)  # a copy to collect
    for device in imports.devices.values():
        device.sync()
    assert not db.devices_due_user_copies() & set(imports.devices)
    lost, kept = imports.devices
    result = ok(imports.admin.post("/api/v1/admin/actions/retire-admin", json={"device_id": lost}))
    # The key left our control: no longer current anywhere, kept decrypt-only on the
    # other device; pfxha cannot revoke or re-issue it (the admin imports a new one).
    assert (result["revocations_queued"], result["rollovers_queued"]) == (0, 0)
    assert imports.devices[lost].sync().deleted == [cert.serial_number]
    imports.devices[kept].sync()
    assert not imports.devices[kept].store
    assert set(imports.devices[kept].history) == {cert.serial_number}
    assert [(r["kind"], r["escrow"], r["revocation"]) for r in imports.requests()] == [
        ("imported", "history", "not-at-ca")
    ]
    assert not db.devices_due_user_copies() & set(imports.devices)  # both reported
    # Nothing current is left, so the user-scope checkers have nothing to hold the
    # remaining device to; its history key is there.
    state = db.user_scope()
    assert not [v for v in check_user_scope(Snapshot(users=state)) if imports.world.user in v]
