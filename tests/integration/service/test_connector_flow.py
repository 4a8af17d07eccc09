"""The seed's 7 steps through the real service process, with the real client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509

from chaos.launch.service import ServiceProcess
from connector.pki.envelope import seal
from connector.service_client import BadRequest, ServiceClient, StaleEpochError
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import (
    MiniCA,
    build_world,
    issue_for,
    new_key,
    ok,
    open_delivery,
    pack,
    public_pem,
)


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[ServiceClient]:
    with ServiceClient(service.url, timeout=10) as c:
        yield c


def test_profile_to_installed_certificate(admin: httpx.Client, client: ServiceClient) -> None:
    world = build_world(admin, unique, subject_template="CN={{UserName}}", key_type="p256")
    ((device_id, device),) = world.devices.items()
    epoch = next_epoch(admin)
    name = unique("conn")
    client.register(name, epoch)

    batch = client.poll_requests(name, epoch, max_items=500, wait_s=0)
    mine = [r for r in batch if r.device_id == device_id]
    assert len(mine) == 1
    req = mine[0]
    assert req.profile.id == world.profile
    assert req.profile.key_type == "p256"
    assert req.variables["DeviceId"] == device_id
    assert req.variables["UserPrincipalName"] == f"{world.user}@example.test"

    kra = client.kra_certificate()
    ca = MiniCA()
    issued = issue_for(req, ca, kra)
    client.record_intent(name, epoch, req.id, public_pem(issued.key))
    client.upload_result(name, epoch, req.id, issued.envelope, issued.cert.serial_number, ca.name)
    # A retried upload (answer lost) is accepted and changes nothing.
    client.upload_result(name, epoch, req.id, issued.envelope, issued.cert.serial_number, ca.name)

    checkin = ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))
    (delivery,) = checkin["deliveries"]
    assert delivery["request_id"] == req.id
    pfx = open_delivery(delivery["envelope_b64"], device["cert"], device["key"])
    assert pfx.cert is not None
    assert pfx.key is not None
    assert pfx.cert.certificate == issued.cert
    assert [c.certificate for c in pfx.additional_certs] == [ca.cert]

    ok(
        admin.post(
            f"/api/v1/devices/{device_id}/report",
            json={"request_id": req.id, "status": "installed"},
        )
    )
    certs = ok(admin.get("/api/v1/read/certificates", params={"device_id": device_id}))
    assert certs == [
        {
            "request_id": req.id,
            "serial": str(issued.cert.serial_number),
            "issuer_ca": ca.name,
            "device_id": device_id,
            "profile_id": world.profile,
            "epoch": epoch,
            "state": "installed",
            "revocation": None,
            "not_after": issued.cert.not_valid_after_utc.isoformat(),
        }
    ]
    # Once installed, nothing more is handed out for that slot.
    assert not [r for r in client.poll_requests(name, epoch, 500, 0) if r.device_id == device_id]


def test_stale_epoch_is_refused_counted_and_changes_nothing(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique)
    ((device_id, _),) = world.devices.items()
    old, new = unique("old"), unique("new")
    epoch = next_epoch(admin)
    client.register(old, epoch)
    req = next(r for r in client.poll_requests(old, epoch, 500, 0) if r.device_id == device_id)
    key = new_key()
    client.record_intent(old, epoch, req.id, public_pem(key))
    client.register(new, epoch + 1)

    kra = client.kra_certificate()
    ca = MiniCA()
    cert = ca.issue(key.public_key(), device_id)
    with pytest.raises(StaleEpochError) as err:
        client.upload_result(
            old, epoch, req.id, seal(pack(key, cert, ca), kra), cert.serial_number, ca.name
        )
    assert err.value.highest_epoch == epoch + 1
    for call in (
        lambda: client.poll_requests(old, epoch, 10, 0),
        lambda: client.heartbeat(old, epoch, "healthy", {}),
        lambda: client.register(old, epoch),
        lambda: client.register(unique("rogue"), epoch + 1),  # same epoch, other name
    ):
        with pytest.raises(StaleEpochError):
            call()

    requests = ok(admin.get("/api/v1/read/requests"))
    mine = next(r for r in requests if r["id"] == req.id)
    assert mine["state"] == "in_flight"
    assert mine["serial"] is None
    rejections = [r for r in ok(admin.get("/api/v1/read/stale-rejections")) if r["name"] in (old,)]
    assert {r["endpoint"] for r in rejections} == {
        "requests/result",
        "requests/poll",
        "heartbeat",
        "register",
    }
    assert (
        'pfxha_service_stale_epoch_rejections_total{endpoint="requests/result"}'
        in admin.get("/metrics").text
    )

    # The new leader sees the deposed epoch's intent, reconciles, and takes over.
    (intent,) = [i for i in client.inflight_intents(new, epoch + 1) if i.request_id == req.id]
    assert intent.epoch == epoch
    assert intent.public_key_pem == public_pem(key)
    assert not intent.cancelled
    key2 = new_key()
    client.record_intent(new, epoch + 1, req.id, public_pem(key2))
    assert req.id not in {i.request_id for i in client.inflight_intents(new, epoch + 1)}


def test_upload_that_does_not_match_the_intent_is_refused(
    admin: httpx.Client, client: ServiceClient, service: ServiceProcess
) -> None:
    world = build_world(admin, unique)
    ((device_id, _),) = world.devices.items()
    name, epoch = unique("conn"), next_epoch(admin)
    client.register(name, epoch)
    req = next(r for r in client.poll_requests(name, epoch, 500, 0) if r.device_id == device_id)
    key = new_key()
    client.record_intent(name, epoch, req.id, public_pem(key))
    kra, ca = client.kra_certificate(), MiniCA()

    other_key = new_key()
    wrong_key_cert = ca.issue(other_key.public_key(), device_id)
    wrong_device_cert = ca.issue(key.public_key(), "some-other-device")
    right = ca.issue(key.public_key(), device_id)
    # Sealed to someone else (the device's management certificate), not to the KRA.
    device_cert = next(iter(world.devices.values()))["cert"]
    wrong_recipient = x509.load_pem_x509_certificate(device_cert.encode())
    cases = {
        "key": (seal(pack(other_key, wrong_key_cert, ca), kra), wrong_key_cert.serial_number),
        "device": (seal(pack(key, wrong_device_cert, ca), kra), wrong_device_cert.serial_number),
        "recipient": (seal(pack(key, right, ca), wrong_recipient), right.serial_number),
        "garbage": (b"not a cms envelope", right.serial_number),
        "serial": (seal(pack(key, right, ca), kra), right.serial_number + 1),
    }
    for label, (blob, serial) in cases.items():
        with pytest.raises(BadRequest) as err:
            client.upload_result(name, epoch, req.id, blob, serial, ca.name)
        assert err.value.status == 400, label
    # Every refusal is logged with its reason: those decided against the stored
    # request and those of the envelope itself, checked before the transaction.
    refusals = [
        line
        for line in (service.directory / "service.log").read_text().splitlines()
        if "result_refused" in line and req.id in line
    ]
    assert len(refusals) == len(cases)
    assert any("not the recorded intent's" in line for line in refusals)
    assert any("subject serialNumber" in line for line in refusals)
    assert any("does not open with the KRA key" in line for line in refusals)
    assert any("is not the certificate's serial" in line for line in refusals)

    mine = next(r for r in ok(admin.get("/api/v1/read/requests")) if r["id"] == req.id)
    assert mine["state"] == "in_flight"
    assert mine["serial"] is None
    client.upload_result(
        name, epoch, req.id, seal(pack(key, right, ca), kra), right.serial_number, ca.name
    )
    with pytest.raises(BadRequest) as unknown:
        client.record_intent(name, epoch, "req-does-not-exist", public_pem(key))
    assert unknown.value.status == 404


def test_retryable_failure_requeues_and_final_failure_keeps_the_reason(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique, devices=2)
    first, second = world.devices
    name, epoch = unique("conn"), next_epoch(admin)
    client.register(name, epoch)
    batch = {r.device_id: r for r in client.poll_requests(name, epoch, 500, 0)}
    client.record_intent(name, epoch, batch[first].id, public_pem(new_key()))
    client.fail_request(name, epoch, batch[first].id, "every CA of user-auth unreachable", True)
    client.fail_request(name, epoch, batch[second].id, "template refused", False)
    by_id = {r["id"]: r for r in ok(admin.get("/api/v1/read/requests"))}
    assert by_id[batch[first].id]["state"] == "pending"
    assert by_id[batch[second].id]["state"] == "failed"
    assert by_id[batch[second].id]["reason"] == "template refused"
    again = [r.id for r in client.poll_requests(name, epoch, 500, 0)]
    assert batch[first].id in again
    assert batch[second].id not in again


def test_revoked_connector_is_refused_whatever_its_epoch(
    admin: httpx.Client, client: ServiceClient
) -> None:
    rogue, good = unique("rogue"), unique("good")
    epoch = next_epoch(admin)
    client.register(rogue, epoch)
    client.heartbeat(good, 0, "healthy", {})
    revoked = ok(admin.post(f"/api/v1/admin/connectors/{rogue}/revoke", json={"reason": "stolen"}))
    assert revoked["reason"] == "stolen"
    for call in (
        lambda: client.poll_requests(rogue, epoch, 10, 0),
        lambda: client.register(rogue, epoch + 100),
        lambda: client.heartbeat(rogue, 0, "healthy", {}),
    ):
        with pytest.raises(BadRequest) as err:
            call()
        assert err.value.status == 403
    # The highest epoch never decreases (the revoked holder's epoch stays
    # deposed for everyone), and the refused register changed nothing.
    assert next_epoch(admin) == epoch + 1
    client.register(good, epoch + 1)
    listed = {c["name"]: c for c in ok(admin.get("/api/v1/read/connectors"))}
    assert listed[rogue]["revoked"]
    assert listed[rogue]["role"] == "standby"
    assert listed[good]["role"] == "active"
    metrics = admin.get("/metrics").text
    assert 'pfxha_service_revoked_connector_calls_total{endpoint="register"} 1.0' in metrics
    missing = admin.post("/api/v1/admin/connectors/nobody/revoke", json={})
    assert missing.status_code == 404


def test_requests_of_an_answer_lost_on_the_way_are_leased_again(
    admin: httpx.Client, client: ServiceClient
) -> None:
    for _ in range(2):
        build_world(admin, unique, subject_template="CN={{UserName}}", key_type="p256")
    epoch = next_epoch(admin)
    name = unique("conn")
    client.register(name, epoch)

    got = client.poll_work(name, epoch, max_items=1, wait_s=0)
    assert got.lease_seq is not None
    lost = client.poll_work(name, epoch, max_items=1, wait_s=0, received=got.lease_seq)
    assert lost.lease_seq is not None
    assert lost.lease_seq > got.lease_seq
    (lost_request,) = lost.requests

    # Naming nothing, or the lost answer itself, takes nothing again: the lease holds.
    quiet = client.poll_work(name, epoch, max_items=500, wait_s=0, received=lost.lease_seq)
    assert lost_request.id not in {r.id for r in quiet.requests}
    assert lost_request.id not in {
        r.id for r in client.poll_work(name, epoch, max_items=500, wait_s=0).requests
    }
    # The connector says it received only the first answer: the second never arrived.
    again = client.poll_work(name, epoch, max_items=500, wait_s=0, received=got.lease_seq)
    assert lost_request.id in {r.id for r in again.requests}
    assert again.lease_seq is not None
    assert again.lease_seq > lost.lease_seq
    assert got.requests[0].id not in {r.id for r in again.requests}  # that one it holds
    # Another epoch's answer is not this one's to name.
    other = next_epoch(admin)
    client.register(name, other)
    # Leased to the old epoch: a new leader takes them at once, whatever it names.
    taken = client.poll_work(name, other, max_items=500, wait_s=0, received=0)
    assert lost_request.id in {r.id for r in taken.requests}


def test_a_registration_answer_lost_on_the_way_gives_its_first_batch_again(
    admin: httpx.Client, client: ServiceClient
) -> None:
    build_world(admin, unique, subject_template="CN={{UserName}}", key_type="p256")
    epoch = next_epoch(admin)
    name = unique("conn")
    lost = client.register(name, epoch, max_items=1, received=0)
    (first,) = lost.requests
    assert lost.lease_seq is not None
    # The same registration again, as after a timeout: this epoch received nothing.
    again = client.register(name, epoch, max_items=1, received=0)
    assert [r.id for r in again.requests] == [first.id]
    # Once it names what it received, the batch it holds stays with it.
    held = client.register(name, epoch, max_items=1, received=again.lease_seq)
    assert first.id not in {r.id for r in held.requests}
