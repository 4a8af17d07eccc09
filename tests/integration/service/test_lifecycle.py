"""Renewal, restart durability, connector list, long-poll, auth, bad input."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chaos.launch import LaunchError, wait_for
from chaos.launch.service import ServiceProcess, ServiceTLS, self_signed_loopback
from connector.service_client import (
    CertificateRequest,
    ServiceClient,
    ServiceUnavailable,
    StaleEpochError,
)
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import FakeConnector, build_world, install, ok


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[ServiceClient]:
    with ServiceClient(service.url) as c:
        yield c


def test_renewal_at_threshold_then_old_certificate_superseded(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique, renewal_threshold_percent=20)
    ((device_id, device),) = world.devices.items()
    connector = FakeConnector(client, unique("conn"), next_epoch(admin))
    old = install(admin, world, connector, days=10)[device_id]
    now = dt.datetime.now(dt.UTC)

    def renewals() -> list[dict[str, object]]:
        return [
            r
            for r in ok(admin.get("/api/v1/read/requests"))
            if r["device_id"] == device_id and r["kind"] == "renewal"
        ]

    ok(
        admin.post(
            "/api/v1/admin/renewal-scan", json={"as_of": (now + dt.timedelta(days=7)).isoformat()}
        )
    )
    assert renewals() == []  # 30 % of the lifetime left: not yet
    for _ in range(2):  # the second scan finds the renewal already queued
        ok(
            admin.post(
                "/api/v1/admin/renewal-scan",
                json={"as_of": (now + dt.timedelta(days=8, hours=1)).isoformat()},
            )
        )
    assert len(renewals()) == 1

    new = install(admin, world, connector, days=10)[device_id]
    assert new.cert.serial_number != old.cert.serial_number
    (task,) = [t for t in connector.revocations() if t.serial == old.cert.serial_number]
    assert task.reason == "superseded"
    # A request poll says how many revocations wait, so a leader told 0 skips its own
    # revocation poll: the count is the tasks a revocation poll would hand out.
    polled = connector.client.poll_work(connector.name, connector.epoch, 1, 0)
    assert polled.revocations_waiting == len(connector.revocations()) >= 1
    checkin = ok(admin.post(f"/api/v1/devices/{device_id}/checkin"))
    assert [d["serial"] for d in checkin["deletions"]] == [str(old.cert.serial_number)]
    states = {
        c["serial"]: (c["state"], c["revocation"])
        for c in ok(admin.get("/api/v1/read/certificates", params={"device_id": device_id}))
    }
    assert states == {
        str(old.cert.serial_number): ("installed", "pending"),
        str(new.cert.serial_number): ("installed", None),
    }
    del device


def test_restart_loses_nothing_acknowledged(
    start_service: Callable[..., ServiceProcess],
) -> None:
    svc = start_service()
    with svc.admin_client() as admin, ServiceClient(svc.url) as client:
        world = build_world(admin, unique, devices=2)
        first, second = world.devices
        connector = FakeConnector(client, "conn-a", 7)
        issued = connector.issue([first, second])
        (delivery,) = ok(admin.post(f"/api/v1/devices/{first}/checkin"))["deliveries"]
        report = {"request_id": delivery["request_id"], "status": "installed"}
        ok(admin.post(f"/api/v1/devices/{first}/report", json=report))
        svc.kill()  # SIGKILL: no shutdown hook runs
        svc.start()

        with pytest.raises(StaleEpochError):
            client.register("conn-b", 6)
        client.heartbeat("conn-a", 7, "healthy", {})  # still the holder of epoch 7
        checkin = ok(admin.post(f"/api/v1/devices/{second}/checkin"))  # sealed before the restart
        (delivery,) = checkin["deliveries"]
        assert delivery["serial"] == str(issued[second].cert.serial_number)
        by_device = {c["device_id"]: c["state"] for c in ok(admin.get("/api/v1/read/certificates"))}
        assert by_device == {first: "installed", second: "delivered"}
        (rejection,) = ok(admin.get("/api/v1/read/stale-rejections"))
        assert rejection["name"] == "conn-b"


def test_connector_list_shows_one_active_and_health_goes_unknown(
    start_service: Callable[..., ServiceProcess],
) -> None:
    svc = start_service(extra_args=["--connector-stale-after", "1"])
    with svc.admin_client() as admin, ServiceClient(svc.url) as client:
        client.register("conn-a", 3)
        assert client.heartbeat("conn-a", 3, "healthy", {"cas_up": 2}) == "active"
        assert client.heartbeat("conn-b", 0, "warning", {"reason": "primary CA down"}) == "standby"
        listed = {c["name"]: c for c in ok(admin.get("/api/v1/read/connectors"))}
        assert (
            listed["conn-a"]["role"],
            listed["conn-a"]["health"],
            listed["conn-a"]["epoch"],
        ) == ("active", "healthy", 3)
        assert (listed["conn-b"]["role"], listed["conn-b"]["health"]) == ("standby", "warning")
        assert listed["conn-a"]["details"] == {"cas_up": 2}
        assert 'pfxha_service_active_connector{name="conn-a"} 1.0' in admin.get("/metrics").text

        def all_unknown() -> bool:
            rows = ok(admin.get("/api/v1/read/connectors"))
            return all(c["health"] == "unknown" and c["role"] == "standby" for c in rows)

        wait_for(all_unknown, timeout=10, what="connectors to go unknown")
        client.heartbeat("conn-a", 3, "unhealthy", {})
        listed = {c["name"]: c for c in ok(admin.get("/api/v1/read/connectors"))}
        assert (listed["conn-a"]["role"], listed["conn-a"]["health"]) == ("active", "unhealthy")


def test_long_poll_answers_when_work_arrives(admin: httpx.Client, client: ServiceClient) -> None:
    name, epoch = unique("conn"), next_epoch(admin)
    client.register(name, epoch)
    client.poll_requests(name, epoch, 500, 0)  # lease whatever other tests left
    got: list[CertificateRequest] = []
    polling = threading.Thread(
        target=lambda: got.extend(client.poll_requests(name, epoch, 500, 20))
    )
    started = time.monotonic()
    polling.start()
    world = build_world(admin, unique)
    polling.join(timeout=25)
    assert not polling.is_alive()
    assert [r.device_id for r in got] == list(world.devices)
    assert time.monotonic() - started < 15  # woken by the new work, not by the 20 s deadline


def test_admin_token_guards_admin_and_read_only(
    start_service: Callable[..., ServiceProcess],
) -> None:
    svc = start_service(admin_token="lab-admin-token")
    assert httpx.get(svc.url + "/api/v1/read/connectors").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (
        httpx.post(
            svc.url + "/api/v1/admin/groups", json={"id": "g", "name": "g"}, headers=wrong
        ).status_code
        == 401
    )
    with svc.admin_client() as admin:
        ok(admin.post("/api/v1/admin/groups", json={"id": "g", "name": "g"}))
        assert ok(admin.get("/api/v1/read/connectors")) == []
    with ServiceClient(svc.url) as client:
        client.kra_certificate()
        assert "lab-admin-token" not in (svc.directory / "service.log").read_text()


def test_bad_input_is_4xx_and_changes_nothing(
    admin: httpx.Client, client: ServiceClient, service: ServiceProcess
) -> None:
    name, epoch = unique("conn"), next_epoch(admin)
    client.register(name, epoch)

    def snapshot() -> tuple[object, ...]:
        return tuple(
            ok(admin.get(f"/api/v1/read/{what}"))
            for what in ("requests", "revocations", "connectors", "stale-rejections")
        )

    before = snapshot()
    user = {"id": unique("u"), "name": "n", "upn": "u@x", "email": "u@x"}
    cases: list[tuple[str, str, object, int]] = [
        ("POST", "/api/v1/admin/users", b"{not json", 422),
        ("POST", "/api/v1/admin/users", {**user, "extra": 1}, 422),
        ("POST", "/api/v1/admin/users", {**user, "id": 5}, 422),
        ("POST", "/api/v1/admin/users", {**user, "id": "../etc"}, 422),
        ("POST", "/api/v1/admin/users", {**user, "name": "x" * 2_000_000}, 413),
        ("POST", "/api/v1/admin/profiles", {"id": unique("p"), "key_type": "rsa1024"}, 422),
        ("POST", "/api/v1/admin/devices", {"id": unique("d"), "user_id": "nobody"}, 404),
        ("POST", "/api/v1/admin/actions/block", {"device_id": "nobody"}, 404),
        ("POST", "/api/v1/devices/nobody/checkin", None, 404),
        ("POST", "/api/v1/connector/requests/poll", {"name": name, "epoch": str(epoch)}, 422),
        (
            "POST",
            "/api/v1/connector/heartbeat",
            b'{"name": "x", "epoch": 0, "health": "healthy", "details": {"x": NaN}}',
            422,  # non-finite JSON is refused before any route (docs/service.md)
        ),
        (
            "POST",
            "/api/v1/connector/heartbeat",
            b'{"name": "x", "epoch": 0, "health": "healthy", "details": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            422,  # runaway nesting is refused before any route (docs/service.md)
        ),
        (
            "POST",
            "/api/v1/connector/requests/poll",
            {"name": name, "epoch": epoch, "max_items": 501},
            422,
        ),
        ("POST", "/api/v1/connector/requests/poll", {"name": name, "epoch": epoch + 5}, 428),
        (
            "POST",
            "/api/v1/connector/requests/req-nope/intent",
            {"name": name, "epoch": epoch, "public_key_pem": "x"},
            400,
        ),
        (
            "POST",
            "/api/v1/connector/revocations/rev-nope/confirm",
            {"name": name, "epoch": epoch},
            404,
        ),
        (
            "POST",
            "/api/v1/connector/requests/req-nope/result",
            {"name": name, "epoch": epoch, "envelope_b64": "!!", "serial": "1", "ca_name": "ca"},
            400,
        ),
    ]
    for method, path, body, status in cases:
        if isinstance(body, bytes):
            response = admin.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
        else:
            response = admin.request(method, path, json=body)
        assert response.status_code == status, (
            path,
            body if not isinstance(body, dict) or len(str(body)) < 200 else "big",
            response.text[:200],
        )
        assert "detail" in response.json()
    assert snapshot() == before
    del service


def test_tls_serves_https_to_clients_that_trust_the_server_ca(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    cert, key = self_signed_loopback(tmp_path)
    tls = ServiceTLS(cert, key, server_ca=cert)
    svc = start_service(tls=tls)
    assert svc.url.startswith("https://")
    with ServiceClient(svc.url, verify=svc.verify) as client:
        client.kra_certificate()
    with ServiceClient(svc.url) as untrusting, pytest.raises(ServiceUnavailable):
        untrusting.kra_certificate()  # the lab CA is not in the system store


def test_shutdown_answers_open_long_polls(start_service: Callable[..., ServiceProcess]) -> None:
    svc = start_service()
    answers: list[object] = []
    with ServiceClient(svc.url) as client, svc.admin_client() as admin:
        client.register("conn-a", 1)

        def last_seen() -> str:
            (row,) = ok(admin.get("/api/v1/read/connectors"))
            return str(row["last_seen"])

        registered = last_seen()
        polling = threading.Thread(
            target=lambda: answers.append(client.poll_requests("conn-a", 1, 10, 25))
        )
        polling.start()
        # Every accepted call stamps last_seen: the poll has arrived and is waiting.
        wait_for(lambda: last_seen() != registered, timeout=10, what="the long poll to arrive")
        started = time.monotonic()
        svc.stop()
        polling.join(timeout=10)
    assert answers == [[]]  # an empty batch, not a 500 or a cut connection
    assert time.monotonic() - started < 10  # not held for the 25 s poll


def test_admin_token_file_must_be_private(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    token = tmp_path / "admin-token"
    token.write_text("file-token\n")
    token.chmod(0o644)
    with pytest.raises(LaunchError, match="chmod 600"):
        start_service(extra_args=["--admin-token-file", str(token)])
    token.chmod(0o600)
    svc = start_service(extra_args=["--admin-token-file", str(token)])
    assert httpx.get(svc.url + "/api/v1/read/connectors").status_code == 401
    authorised = {"Authorization": "Bearer file-token"}
    assert httpx.get(svc.url + "/api/v1/read/connectors", headers=authorised).status_code == 200
