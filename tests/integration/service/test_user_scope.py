"""User-scoped profiles through the real service: one certificate per user on all devices.

The connector is played by :class:`FakeConnector` (the real client, a tiny CA);
``tests/integration/agent/test_user_scope_agent.py`` runs the real agent and CFSSL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from chaos.launch.service import ServiceProcess
from chaos.service.clients import DeviceClient, DeviceCredentials
from connector.service_client import ServiceClient
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import FakeConnector, World, build_world, ok


class Tenant:
    """One user with devices under a user-scoped profile, the connector and the devices."""

    def __init__(
        self, service: ServiceProcess, admin: httpx.Client, client: ServiceClient, devices: int
    ) -> None:
        self.admin, self.service = admin, service
        self.world: World = build_world(
            admin, unique, devices=devices, scope="user", validity_days=10
        )
        self.connector = FakeConnector(client, unique("conn"), next_epoch(admin))
        self.devices = {d: self.device(d) for d in self.world.devices}

    def set_mode(self, mode: str) -> None:
        ok(self.admin.put("/api/v1/admin/mode", json={"mode": mode}))

    def device(self, device_id: str) -> DeviceClient:
        made = self.world.devices[device_id]
        return DeviceClient(
            self.service.url, DeviceCredentials(device_id, made["cert"], made["key"])
        )

    def enroll(self, device_id: str) -> DeviceClient:
        body = ok(
            self.admin.post(
                "/api/v1/admin/devices", json={"id": device_id, "user_id": self.world.user}
            )
        )
        self.world.devices[device_id] = {
            "cert": body["management_certificate_pem"],
            "key": body["management_key_pem"],
        }
        self.devices[device_id] = self.device(device_id)
        return self.devices[device_id]

    def issue(self) -> int:
        """Issue the user's pending certificate; its serial."""
        return self.connector.issue([self.world.user])[self.world.user].cert.serial_number

    def renew(self) -> tuple[int, int]:
        """Issue and install the user's certificate, then renew it (as of 9 days later,
        past the 20 % threshold of 10 days): (old serial, new serial)."""
        old = self.issue()
        self.sync_all()
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=9)
        scan = ok(self.admin.post("/api/v1/admin/renewal-scan", json={"as_of": later.isoformat()}))
        assert scan["requests_queued"] >= 1
        return old, self.issue()

    def sync_all(self) -> None:
        for device in self.devices.values():
            device.sync()

    def user_requests(self) -> list[dict[str, object]]:
        rows = ok(self.admin.get("/api/v1/read/requests"))
        return [r for r in rows if r["user_id"] == self.world.user]

    def current(self, device: DeviceClient) -> int | None:
        held = device.store.get(self.world.profile)
        return None if held is None else held.serial

    def revocation(self, serial: int) -> dict[str, object]:
        (task,) = [t for t in self.connector.revocations() if t.serial == serial]
        self.connector.confirm(task)
        return {"reason": task.reason, "request_id": task.request_id}


@pytest.fixture
def tenant(service: ServiceProcess, admin: httpx.Client) -> Iterator[Tenant]:
    with ServiceClient(service.url) as client:
        made = Tenant(service, admin, client, devices=3)
        yield made
    made.set_mode("hybrid")
    for device in made.devices.values():
        device.close()


def test_one_ca_call_serves_every_device_of_the_user_and_later_ones(tenant: Tenant) -> None:
    (request,) = tenant.user_requests()
    assert (request["scope"], request["device_id"], request["escrow"]) == (
        "user",
        tenant.world.user,
        "current",
    )
    serial = tenant.issue()
    tenant.sync_all()
    keys = set()
    for device in tenant.devices.values():
        held = device.store[tenant.world.profile]
        assert (held.serial, held.scope, held.usage) == (serial, "user", "current")
        keys.add(held.key.private_numbers())  # type: ignore[union-attr]
    assert len(keys) == 1  # the same key on every device
    late = tenant.enroll(unique("dev"))
    late.sync()
    assert tenant.current(late) == serial
    assert late.store[tenant.world.profile].key.private_numbers() in keys  # type: ignore[union-attr]
    # Still one request, one certificate: no further CA call for four devices.
    assert len(tenant.user_requests()) == 1
    assert tenant.user_requests()[0]["state"] == "installed"
    copies = tenant.admin.get(
        "/api/v1/read/user-copies", params={"user_id": tenant.world.user}
    ).json()
    assert sorted(c["device_id"] for c in copies) == sorted(tenant.devices)
    assert {c["state"] for c in copies} == {"installed"}
    # A repeated check-in delivers nothing more.
    assert all(not d.sync().installed for d in tenant.devices.values())


# event -> the request body's kind; what happens is chaos.service.scope's table.
DEVICE_EVENTS = ("retire-user", "retire-admin", "block", "delete-device")
USER_EVENTS = ("leave-group", "delete-profile", "remove-assignment", "revoke-all-of-user")


@pytest.mark.parametrize("mode", ["hybrid", "standalone"])
@pytest.mark.parametrize("event", DEVICE_EVENTS)
def test_device_events_on_a_shared_certificate(event: str, mode: str, tenant: Tenant) -> None:
    tenant.set_mode(mode)
    old = tenant.issue()
    tenant.sync_all()
    gone, *rest = tenant.devices
    before = tenant.admin.get("/api/v1/read/revocations").json()
    response = tenant.admin.post(f"/api/v1/admin/actions/{event}", json={"device_id": gone})
    if mode == "standalone" and event in ("block", "delete-device"):
        assert response.status_code == 400
        assert "n/a" in response.json()["detail"]
        assert tenant.admin.get("/api/v1/read/revocations").json() == before
        return
    result = ok(response)
    lost = tenant.devices[gone].sync()
    if event == "retire-user":
        # The user removed a device they still hold: gone from it, valid on the others.
        assert result["revocations_queued"] == result["rollovers_queued"] == 0
        assert lost.deleted == [old]
        assert tenant.current(tenant.devices[gone]) is None
        assert not [t for t in tenant.connector.revocations() if t.serial == old]
        for device_id in rest:
            assert not tenant.devices[device_id].sync().deleted
            assert tenant.current(tenant.devices[device_id]) == old
        return
    # The key left our control: revoked as keyCompromise, re-issued for the others.
    assert (result["revocations_queued"], result["rollovers_queued"]) == (1, 1)
    assert tenant.revocation(old)["reason"] == "keyCompromise"
    assert lost.deleted == ([] if event == "block" else [old])
    new = tenant.issue()
    assert new != old
    rollover = [r for r in tenant.user_requests() if r["kind"] == "rollover"]
    assert [r["serial"] for r in rollover] == [str(new)]
    for device_id in rest:
        device = tenant.devices[device_id]
        device.sync()
        assert tenant.current(device) == new
        assert set(device.history) == {old}  # old mail still opens
        assert device.history[old].usage == "decrypt-only"
    assert not tenant.devices[gone].sync().installed  # nothing more for the lost one
    assert tenant.current(tenant.devices[gone]) == (old if event == "block" else None)


def action_body(event: str, world: World) -> dict[str, str]:
    return {
        "leave-group": {"group_id": world.group, "user_id": world.user},
        "delete-profile": {"profile_id": world.profile},
        "remove-assignment": {"assignment_id": world.assignment},
        "revoke-all-of-user": {"user_id": world.user},
    }[event]


REASONS = {
    "leave-group": "affiliationChanged",
    "delete-profile": "cessationOfOperation",
    "remove-assignment": "privilegeWithdrawn",
    "revoke-all-of-user": "privilegeWithdrawn",
}


@pytest.mark.parametrize("mode", ["hybrid", "standalone"])
@pytest.mark.parametrize("event", USER_EVENTS)
def test_user_events_remove_the_certificate_and_its_history_everywhere(
    event: str, mode: str, tenant: Tenant
) -> None:
    tenant.set_mode(mode)
    first = tenant.issue()
    tenant.sync_all()
    # A rollover first, so that there is a history key to remove as well.
    lost, *_ = tenant.devices
    ok(tenant.admin.post("/api/v1/admin/actions/retire-admin", json={"device_id": lost}))
    tenant.devices.pop(lost).close()
    tenant.revocation(first)
    second = tenant.issue()
    tenant.sync_all()

    result = ok(
        tenant.admin.post(f"/api/v1/admin/actions/{event}", json=action_body(event, tenant.world))
    )
    assert result["revocations_queued"] == 1
    assert result["deletions_queued"] == 2 * len(tenant.devices)  # current + history each
    assert tenant.revocation(second)["reason"] == REASONS[event]
    for device in tenant.devices.values():
        assert sorted(device.sync().deleted) == sorted([first, second])
        assert tenant.current(device) is None
        assert not device.history
        assert not device.sync().deleted  # reported, not repeated
    assert {r["escrow"] for r in tenant.user_requests()} == {"withdrawn"}
    # No new certificate for the user under this profile.
    assert not [
        r
        for r in tenant.connector.client.poll_requests(
            tenant.connector.name, tenant.connector.epoch, 500, 0
        )
        if r.device_id == tenant.world.user
    ]


def test_renewal_once_for_all_devices_old_one_revoked_after_every_install(
    tenant: Tenant,
) -> None:
    old, new = tenant.renew()
    renewals = [r for r in tenant.user_requests() if r["kind"] == "renewal"]
    assert len(renewals) == 1  # once for the user, not once per device
    first, *others = tenant.devices.values()
    first.sync()
    # One device installed it: the old one stays valid for the others meanwhile.
    assert not [t for t in tenant.connector.revocations() if t.serial == old]
    for device in others:
        device.sync()
    assert tenant.revocation(old)["reason"] == "superseded"
    for device in tenant.devices.values():
        device.sync()
        assert tenant.current(device) == new
        assert set(device.history) == {old}


def test_renewal_deadline_retires_the_old_certificate_without_every_device(
    tenant: Tenant,
) -> None:
    old, _ = tenant.renew()
    next(iter(tenant.devices.values())).sync()  # one device of three installs it
    assert not [t for t in tenant.connector.revocations() if t.serial == old]
    # The default deadline is 7 days after the renewal was issued.
    past = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    tenant.admin.post("/api/v1/admin/renewal-scan", json={"as_of": past.isoformat()})
    assert tenant.revocation(old)["reason"] == "superseded"


def test_profile_scope_is_checked_and_the_table_is_served(admin: httpx.Client) -> None:
    bad = admin.post(
        "/api/v1/admin/profiles",
        json={"id": unique("p"), "scope": "user", "subject_template": "CN={{DeviceId}}"},
    )
    assert bad.status_code == 400
    assert "scope=user" in bad.json()["detail"]
    made = ok(admin.post("/api/v1/admin/profiles", json={"id": unique("p")}))
    assert made["scope"] == "device"  # the default: existing clients unchanged
    user = ok(admin.post("/api/v1/admin/profiles", json={"id": unique("p"), "scope": "user"}))
    patched = admin.patch(
        f"/api/v1/admin/profiles/{user['id']}", json={"san_templates": ["DNS={{DeviceId}}.x"]}
    )
    assert patched.status_code == 400
    rows = ok(admin.get("/api/v1/read/revocation-table", params={"scope": "user"}))
    assert {r["event"]: r["crl_reason"] for r in rows}["block"] == "keyCompromise"
    assert len(ok(admin.get("/api/v1/read/revocation-table"))) == len(rows)


# Key recovery needs an admin credential: this module's service runs without one
# (tests/integration/service/test_escrow_admin.py has the rest).
def test_a_service_without_an_admin_credential_refuses_recovery(service: ServiceProcess) -> None:
    response = httpx.post(
        f"{service.url}/api/v1/admin/users/anyone/key-recovery",
        json={"recovery_agent_certificate_pem": "x", "reason": "x"},
    )
    assert response.status_code == 403
    assert "--admin-token-file" in response.json()["detail"]
