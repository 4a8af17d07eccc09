"""Workload.pause(): an enrollment under way lands before the drill drains; check-ins run
side by side."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from chaos.checkers.ops import CHECKIN, ENROLL
from chaos.history import History
from chaos.workload import LOST_ENROLLMENT_LOOKUP, Device, Workload


def _certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_pause_waits_for_the_enrollment_under_way() -> None:
    cert = _certificate()
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    entered = threading.Event()
    release = threading.Event()
    device_posts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/admin/devices":
            device_posts.append(request.url.path)
            entered.set()
            release.wait(10)
            return httpx.Response(200, json={"management_certificate_pem": pem})
        return httpx.Response(200, json={})

    history = History()
    client = httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler))
    workload = Workload(
        history,
        client,
        requests_of=lambda device: [f"req-{device}"],
        root=cert,
        group="g",
        enroll_per_s=20.0,
        revoke_every_s=0,
        device_keys=1,
    )
    workload.start()
    try:
        assert entered.wait(10), "the workload never enrolled a device"
        # The device's enrollment is stuck in its POST: a pause cannot be complete yet.
        assert workload.pause(timeout=0.2) is False
        release.set()
        assert workload.pause(timeout=10) is True
        # Everything the workload started before the pause is known now.
        assert len(workload.devices) == len(device_posts) >= 1
        enrolled = [e for e in history.snapshot() if e.f == ENROLL and e.type == "ok"]
        assert len(enrolled) == len(device_posts)
    finally:
        release.set()
        workload.close()
        client.close()


def test_some_users_get_more_devices_and_lose_one_of_them() -> None:
    cert = _certificate()
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    posted: list[tuple[str, dict[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        posted.append((request.url.path, body))
        return httpx.Response(200, json={"management_certificate_pem": pem})

    client = httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler))
    workload = Workload(
        History(), client, requests_of=lambda device: [f"req-{device}"], root=cert, group="g",
        enroll_per_s=0, revoke_every_s=0, device_keys=1, seed=7, more_devices_every=3,
    )  # fmt: skip
    try:
        enrolled = workload.enroll_now(6)
        assert len(enrolled) == 6
        per_user = workload.users_with_devices()
        assert len(per_user) == 4  # every third enrollment went to an existing user
        assert sorted(per_user.values(), reverse=True)[0] >= 2
        for device in workload.devices.values():
            device.installed.add("r")
        posted.clear()
        workload.revoke_one()  # retire-user first: one device of a user who has others
        ((path, body),) = posted
        assert path == "/api/v1/admin/actions/retire-user"
        assert per_user[workload.devices[body["device_id"]].user] >= 2
    finally:
        workload.close()
        client.close()


def test_devices_check_in_side_by_side() -> None:
    """Four devices due, four check-in workers: each check-in is answered only once all
    four are at the service at once, which one thread doing them in turn never is."""
    cert = _certificate()
    together = threading.Barrier(4)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/checkin"):
            try:
                together.wait(timeout=10)
            except threading.BrokenBarrierError:
                return httpx.Response(503, json={})
        return httpx.Response(200, json={})

    history = History()
    client = httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler))
    due = {f"dev-{n}" for n in range(4)}
    workload = Workload(
        history, client, requests_of=lambda device: [], root=cert, group="g",
        enroll_per_s=0, revoke_every_s=0, device_keys=1, devices_due=lambda: due,
        checkin_workers=4,
    )  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for device_id in sorted(due):
        workload.devices[device_id] = Device(device_id, "user", cert, key)

    def checked_in() -> set[str]:
        events = history.snapshot()
        return {e.value["device"] for e in events if e.f == CHECKIN and e.type == "ok"}

    workload.start()
    try:
        deadline = time.monotonic() + 20
        while checked_in() != due:
            assert time.monotonic() < deadline, f"checked in: {sorted(checked_in())}"
            time.sleep(0.05)
        failed = [e for e in history.snapshot() if e.f == CHECKIN and e.type == "fail"]
        assert failed == []
    finally:
        workload.close()
        client.close()


def _certificate_for(public_pem: str) -> str:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    now = dt.datetime.now(dt.UTC)
    public_key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public_key, rsa.RSAPublicKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _lossy_service(*, made_with_our_key: bool) -> tuple[httpx.Client, list[str]]:
    """A service that makes the device, drops the answer, and shows the device only on
    the second look (it was still being made)."""
    made: dict[str, str] = {}
    lookups: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/admin/devices":
            body = json.loads(request.content)
            key_pem = body["public_key_pem"]
            if not made_with_our_key:
                other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                key_pem = (
                    other.public_key()
                    .public_bytes(
                        serialization.Encoding.PEM,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                    .decode()
                )
            made[body["id"]] = _certificate_for(key_pem)
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if request.method == "GET" and path.startswith("/api/v1/admin/devices/"):
            device_id = path.rsplit("/", 1)[1]
            lookups.append(device_id)
            if len(lookups) == 1:
                return httpx.Response(404, json={"detail": "no such device"})
            return httpx.Response(200, json={"management_certificate_pem": made[device_id]})
        return httpx.Response(200, json={})

    return httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler)), lookups


def test_an_enrollment_whose_answer_was_lost_is_found_and_checks_in() -> None:
    client, lookups = _lossy_service(made_with_our_key=True)
    history = History()
    workload = Workload(
        history, client, requests_of=lambda device: [f"req-{device}"], root=_certificate(),
        group="g", enroll_per_s=0, revoke_every_s=0, device_keys=1,
        lost_enrollment_lookup=LOST_ENROLLMENT_LOOKUP.copy(sleep=lambda _: None),
    )  # fmt: skip
    try:
        (device_id,) = workload.enroll_now(1)
        assert lookups == [device_id, device_id]
        assert workload.devices[device_id].requests == [f"req-{device_id}"]
        (done,) = [e for e in history.snapshot() if e.f == ENROLL and e.type != "invoke"]
        assert done.type == "ok"
        assert "Server disconnected" in done.value["recovered_from"]
    finally:
        workload.close()
        client.close()


def test_a_device_made_with_another_key_is_not_taken_for_ours() -> None:
    client, _ = _lossy_service(made_with_our_key=False)
    history = History()
    workload = Workload(
        history, client, requests_of=lambda device: [], root=_certificate(),
        group="g", enroll_per_s=0, revoke_every_s=0, device_keys=1,
    )  # fmt: skip
    try:
        assert workload.enroll_now(1) == []
        assert workload.devices == {}
        (done,) = [e for e in history.snapshot() if e.f == ENROLL and e.type != "invoke"]
        assert done.type == "info"
        assert "another key" in done.value["error"]
    finally:
        workload.close()
        client.close()
