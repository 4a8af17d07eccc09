"""Every row of the seed's revocation table, in both modes, through the real service."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from chaos.launch.service import ServiceProcess
from connector.pki.envelope import seal
from connector.service_client import ServiceClient
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import (
    FakeConnector,
    World,
    build_world,
    install,
    issue_for,
    new_key,
    ok,
    pack,
    public_pem,
)

# event -> (body for the action, {mode: (revoked, deleted) or None for n/a}, CRL reason)
Row = tuple[str, dict[str, tuple[bool, bool] | None], str]
TABLE: dict[str, Row] = {
    "retire-user": (
        "device",
        {"standalone": (True, True), "hybrid": (True, True)},
        "cessationOfOperation",
    ),
    "retire-admin": (
        "device",
        {"standalone": (True, True), "hybrid": (True, True)},
        "cessationOfOperation",
    ),
    "block": ("device", {"standalone": None, "hybrid": (True, False)}, "privilegeWithdrawn"),
    "delete-device": (
        "device",
        {"standalone": None, "hybrid": (True, True)},
        "cessationOfOperation",
    ),
    "leave-group": (
        "membership",
        {"standalone": (True, True), "hybrid": (True, True)},
        "affiliationChanged",
    ),
    "delete-profile": (
        "profile",
        {"standalone": (True, True), "hybrid": (True, True)},
        "cessationOfOperation",
    ),
    "remove-assignment": (
        "assignment",
        {"standalone": (True, True), "hybrid": (True, True)},
        "privilegeWithdrawn",
    ),
    "revoke-all-of-user": (
        "user",
        {"standalone": (True, True), "hybrid": (True, True)},
        "privilegeWithdrawn",
    ),
}


def action_body(kind: str, world: World, device_id: str) -> dict[str, str]:
    return {
        "device": {"device_id": device_id},
        "membership": {"group_id": world.group, "user_id": world.user},
        "profile": {"profile_id": world.profile},
        "assignment": {"assignment_id": world.assignment},
        "user": {"user_id": world.user},
    }[kind]


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[ServiceClient]:
    with ServiceClient(service.url) as c:
        yield c


@pytest.fixture
def set_mode(admin: httpx.Client) -> Iterator[object]:
    def set_to(mode: str) -> None:
        ok(admin.put("/api/v1/admin/mode", json={"mode": mode}))

    yield set_to
    set_to("hybrid")


@pytest.mark.parametrize("mode", ["hybrid", "standalone"])
@pytest.mark.parametrize("event", list(TABLE))
def test_revocation_table_row(
    event: str, mode: str, admin: httpx.Client, client: ServiceClient, set_mode: object
) -> None:
    kind, outcomes, reason = TABLE[event]
    set_mode(mode)  # type: ignore[operator]
    world = build_world(admin, unique)
    ((device_id, _),) = world.devices.items()
    connector = FakeConnector(client, unique("conn"), next_epoch(admin))
    issued = install(admin, world, connector)[device_id]
    serial = str(issued.cert.serial_number)
    before = ok(admin.get("/api/v1/read/revocations"))

    response = admin.post(
        f"/api/v1/admin/actions/{event}", json=action_body(kind, world, device_id)
    )
    expected = outcomes[mode]
    if expected is None:
        assert response.status_code == 400
        assert "n/a" in response.json()["detail"]
        assert ok(admin.get("/api/v1/read/revocations")) == before
        assert ok(admin.get(f"/api/v1/admin/devices/{device_id}"))["state"] == "active"
        return
    _revoked, deleted = expected
    result = ok(response)
    assert result["event"] == event
    assert result["mode"] == mode
    assert result["revocations_queued"] == 1
    assert result["deletions_queued"] == (1 if deleted else 0)

    (task,) = [t for t in connector.revocations() if t.serial == int(serial)]
    assert task.ca_name == connector.ca.name
    assert task.reason == reason
    connector.confirm(task)
    connector.confirm(task)  # confirming twice is harmless
    (row,) = [
        r
        for r in ok(admin.get("/api/v1/read/revocations", params={"state": "done"}))
        if r["id"] == task.id
    ]
    assert row["event"] == event
    assert row["done_epoch"] == connector.epoch

    checkin = ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))
    assert checkin["deliveries"] == []
    assert [d["serial"] for d in checkin["deletions"]] == ([serial] if deleted else [])
    if deleted:
        ok(
            admin.post(
                f"/api/v1/devices/{device_id}/report",
                json={"request_id": task.request_id, "status": "deleted"},
            )
        )
        assert ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))["deletions"] == []
    (cert,) = ok(admin.get("/api/v1/read/certificates", params={"device_id": device_id}))
    assert cert["revocation"] == "done"
    # The slot is no longer targeted: nothing new is queued for it.
    assert not [
        r
        for r in client.poll_requests(connector.name, connector.epoch, 500, 0)
        if r.device_id == device_id
    ]


def test_leaving_one_group_keeps_what_another_group_still_targets(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique)
    ((device_id, _),) = world.devices.items()
    other = unique("group")
    ok(admin.post("/api/v1/admin/groups", json={"id": other, "name": "other"}))
    ok(admin.post(f"/api/v1/admin/groups/{other}/members", json={"user_id": world.user}))
    ok(
        admin.post(
            "/api/v1/admin/assignments",
            json={"id": unique("as"), "profile_id": world.profile, "group_id": other},
        )
    )
    connector = FakeConnector(client, unique("conn"), next_epoch(admin))
    install(admin, world, connector)
    result = ok(
        admin.post(
            "/api/v1/admin/actions/leave-group",
            json={"group_id": world.group, "user_id": world.user},
        )
    )
    assert result["revocations_queued"] == 0
    assert ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))["deletions"] == []
    assert (
        admin.post(
            "/api/v1/admin/actions/leave-group",
            json={"group_id": world.group, "user_id": world.user},
        ).status_code
        == 404
    )


def test_events_before_delivery_cancel_and_revoke_without_delivering(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique, devices=3)
    pending_dev, inflight_dev, issued_dev = world.devices
    connector = FakeConnector(client, unique("conn"), next_epoch(admin))
    polled = {
        r.device_id: r
        for r in client.poll_requests(connector.name, connector.epoch, 500, 0)
        if r.device_id in world.devices
    }
    done = issue_for(polled[issued_dev], connector.ca, connector.kra)
    name, epoch = connector.name, connector.epoch
    client.record_intent(name, epoch, polled[issued_dev].id, public_pem(done.key))
    client.upload_result(
        name, epoch, polled[issued_dev].id, done.envelope, done.cert.serial_number, "ca"
    )
    key = new_key()
    client.record_intent(name, epoch, polled[inflight_dev].id, public_pem(key))

    result = ok(
        admin.post("/api/v1/admin/actions/revoke-all-of-user", json={"user_id": world.user})
    )
    assert result["requests_cancelled"] == 3
    assert result["revocations_queued"] == 1
    by_device = {
        r["device_id"]: r
        for r in ok(admin.get("/api/v1/read/requests"))
        if r["device_id"] in world.devices
    }
    assert by_device[pending_dev]["state"] == "failed"
    assert by_device[pending_dev]["reason"] == "cancelled: revoke-all-of-user"
    assert by_device[issued_dev]["state"] == "failed"
    assert by_device[inflight_dev]["state"] == "in_flight"
    assert by_device[inflight_dev]["cancelled"] == "revoke-all-of-user"

    # The in-flight one: the connector's result is stored and revoked, never delivered.
    cert = connector.ca.issue(key.public_key(), inflight_dev)
    client.upload_result(
        connector.name,
        connector.epoch,
        polled[inflight_dev].id,
        seal(pack(key, cert, connector.ca), connector.kra),
        cert.serial_number,
        connector.ca.name,
    )
    serials = {t.serial for t in connector.revocations()}
    assert cert.serial_number in serials
    for device_id in world.devices:
        assert ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))["deliveries"] == []
    assert not [
        r
        for r in client.poll_requests(connector.name, connector.epoch, 500, 0)
        if r.device_id in world.devices
    ]
