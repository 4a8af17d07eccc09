"""Intents and results in batches: one fence check and one commit, item by item outcomes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from chaos.launch.service import ServiceProcess
from chaos.service.app import ServiceConfig, create_app
from connector.service_client import BadRequest, ServiceClient, StaleEpochError, UploadItem
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import MiniCA, build_world, issue_for, ok, public_pem


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[ServiceClient]:
    with ServiceClient(service.url, timeout=10) as c:
        yield c


def rows_by_id(admin: httpx.Client, ids: set[str]) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in ok(admin.get("/api/v1/read/requests")) if r["id"] in ids}


def test_a_refused_item_spoils_no_other_and_leaves_no_trace(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique, devices=3)
    name, epoch = unique("conn"), next_epoch(admin)
    client.register(name, epoch)
    reqs = [r for r in client.poll_requests(name, epoch, 500, 0) if r.device_id in world.devices]
    assert len(reqs) == 3
    kra, ca = client.kra_certificate(), MiniCA()
    issued = {r.id: issue_for(r, ca, kra) for r in reqs}
    first, second, third = reqs

    intents = client.record_intents(
        name,
        epoch,
        [
            (first.id, public_pem(issued[first.id].key)),
            ("req-does-not-exist", public_pem(issued[first.id].key)),
            (second.id, "not a public key"),
            (third.id, public_pem(issued[third.id].key)),
        ],
    )
    assert intents[first.id] is None
    assert intents[third.id] is None
    unknown, garbage = intents["req-does-not-exist"], intents[second.id]
    assert isinstance(unknown, BadRequest)
    assert unknown.status == 404
    assert isinstance(garbage, BadRequest)
    assert garbage.status == 400
    states = rows_by_id(admin, {r.id for r in reqs})
    assert [states[r.id]["state"] for r in reqs] == ["in_flight", "pending", "in_flight"]

    # The third upload carries the first's envelope: refused, and only that item.
    good = issued[first.id]
    results = client.upload_results(
        name,
        epoch,
        [
            UploadItem(first.id, good.envelope, good.cert.serial_number, ca.name),
            UploadItem(third.id, good.envelope, good.cert.serial_number, ca.name),
        ],
    )
    assert results[first.id] is None
    refused = results[third.id]
    assert isinstance(refused, BadRequest)
    assert refused.status == 400
    states = rows_by_id(admin, {r.id for r in reqs})
    assert states[first.id]["state"] == "issued"
    assert states[first.id]["serial"] == str(good.cert.serial_number)
    assert states[third.id]["state"] == "in_flight"
    assert states[third.id]["serial"] is None

    # A retried batch (answer lost) is accepted again and changes nothing.
    again = client.upload_results(
        name, epoch, [UploadItem(first.id, good.envelope, good.cert.serial_number, ca.name)]
    )
    assert again == {first.id: None}


def test_a_stale_epoch_refuses_the_whole_batch_and_changes_nothing(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique, devices=2)
    old, new = unique("old"), unique("new")
    epoch = next_epoch(admin)
    client.register(old, epoch)
    reqs = [r for r in client.poll_requests(old, epoch, 500, 0) if r.device_id in world.devices]
    client.register(new, epoch + 1)
    kra, ca = client.kra_certificate(), MiniCA()
    issued = {r.id: issue_for(r, ca, kra) for r in reqs}
    with pytest.raises(StaleEpochError):
        client.record_intents(old, epoch, [(r.id, public_pem(issued[r.id].key)) for r in reqs])
    with pytest.raises(StaleEpochError):
        client.upload_results(
            old,
            epoch,
            [
                UploadItem(r.id, issued[r.id].envelope, issued[r.id].cert.serial_number, ca.name)
                for r in reqs
            ],
        )
    states = rows_by_id(admin, {r.id for r in reqs})
    assert {s["state"] for s in states.values()} == {"pending"}
    assert all(s["intent_epoch"] is None for s in states.values())


def test_an_empty_or_malformed_batch_is_a_4xx(admin: httpx.Client, service: ServiceProcess) -> None:
    epoch = next_epoch(admin)
    name = unique("conn")
    with ServiceClient(service.url) as client:
        client.register(name, epoch)
    for path, body in (
        ("/api/v1/connector/requests/intents", {"name": name, "epoch": epoch, "items": []}),
        ("/api/v1/connector/requests/results", {"name": name, "epoch": epoch, "items": [{}]}),
    ):
        assert admin.post(path, json=body).status_code == 422, path


def test_only_recorded_intents_of_a_batch_are_logged_as_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # In process: the service logs intents at DEBUG, below what its process writes.
    app = create_app(
        ServiceConfig(db_path=tmp_path / "s.db", kra_dir=tmp_path / "keys", renewal_interval_s=0)
    )
    with (
        TestClient(app) as http,
        ServiceClient("http://testserver", transport=http._transport) as client,
    ):
        world = build_world(http, unique)
        name = unique("conn")
        client.register(name, 1)
        (req,) = [r for r in client.poll_requests(name, 1, 500, 0) if r.device_id in world.devices]
        pem = public_pem(issue_for(req, MiniCA(), client.kra_certificate()).key)
        with caplog.at_level(logging.DEBUG, logger="pfxha.service"):
            outcomes = client.record_intents(name, 1, [(req.id, pem), ("req-unknown", pem)])
    assert outcomes[req.id] is None
    assert isinstance(outcomes["req-unknown"], BadRequest)
    recorded = [r.getMessage() for r in caplog.records if "intent_recorded" in r.getMessage()]
    assert len(recorded) == 1
    assert req.id in recorded[0]
