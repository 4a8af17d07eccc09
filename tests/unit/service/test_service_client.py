from __future__ import annotations

import base64
import json
import threading

import httpx
import pytest

from connector.service_client import (
    BadRequest,
    ServiceClient,
    ServiceError,
    ServiceUnavailable,
    StaleEpochError,
    UploadItem,
)


def client_answering(
    status: int, body: object, seen: list[httpx.Request] | None = None
) -> ServiceClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return ServiceClient("http://service.test", transport=httpx.MockTransport(handler))


def test_409_is_a_stale_epoch_with_the_highest_epoch() -> None:
    client = client_answering(
        409, {"detail": "stale epoch 3: the highest epoch seen is 4", "highest_epoch": 4}
    )
    with pytest.raises(StaleEpochError) as err:
        client.poll_requests("a", 3, 10, 0)
    assert err.value.highest_epoch == 4
    assert "stale epoch 3" in str(err.value)
    assert isinstance(err.value, ServiceError)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ServiceUnavailable),
        (503, ServiceUnavailable),
        (404, BadRequest),
        (422, BadRequest),
        (428, BadRequest),
    ],
)
def test_status_codes_map_to_the_exception_tree(status: int, error: type[ServiceError]) -> None:
    with pytest.raises(error) as err:
        client_answering(status, {"detail": "why"}).register("a", 1)
    assert err.value.status == status
    assert "why" in str(err.value)


def test_transport_failure_and_garbage_answers_are_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServiceUnavailable):
        ServiceClient("http://service.test", transport=httpx.MockTransport(refuse)).register("a", 1)
    with pytest.raises(ServiceUnavailable):
        client_answering(200, b"<html>proxy</html>").register("a", 1)


def test_requests_and_results_on_the_wire() -> None:
    seen: list[httpx.Request] = []
    item = {
        "id": "req-1",
        "device_id": "dev-1",
        "kind": "renewal",
        "profile": {
            "id": "p",
            "key_type": "p256",
            "template": "user-auth",
            "subject_template": "CN={{UserName}}",
            "san_templates": ["email:{{EmailAddress}}"],
            "validity_days": 30,
        },
        "variables": {"UserName": "Ann", "DeviceId": "dev-1"},
    }
    (req,) = client_answering(200, {"requests": [item]}, seen).poll_requests("a", 2, 100, 1.5)
    assert req.profile.san_templates == ("email:{{EmailAddress}}",)
    assert req.kind == "renewal"
    assert req.variables["UserName"] == "Ann"
    assert json.loads(seen[0].content) == {"name": "a", "epoch": 2, "max_items": 100, "wait_s": 1.5}

    serial = 2**150 + 7  # beyond JSON's safe integers: sent as a decimal string
    client_answering(200, {"id": "req-1", "state": "issued"}, seen).upload_result(
        "a", 2, "req-1", b"\x30\x82cms", serial, "issuing-1"
    )
    body = json.loads(seen[1].content)
    assert seen[1].url.path == "/api/v1/connector/requests/req-1/result"
    assert body["serial"] == str(serial)
    assert base64.b64decode(body["envelope_b64"]) == b"\x30\x82cms"


def test_revocations_and_intents_parse() -> None:
    rev = {
        "id": "rev-1",
        "serial": str(2**100),
        "ca_name": "ca",
        "reason": "superseded",
        "request_id": "req-1",
    }
    (task,) = client_answering(200, {"revocations": [rev]}).poll_revocations("a", 2, 10)
    assert task.serial == 2**100
    intent = {
        "request_id": "req-1",
        "epoch": 1,
        "public_key_pem": "PEM",
        "spki_sha256": "ab",
        "cancelled": True,
    }
    (found,) = client_answering(200, {"intents": [intent]}).inflight_intents("a", 2)
    assert found.cancelled
    assert found.epoch == 1


def test_batched_results_stay_under_the_body_limit_and_answer_item_by_item() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        items = json.loads(request.content)["items"]
        return httpx.Response(
            200,
            json={
                "items": [
                    {"id": i["request_id"], "status": 400, "reason": "wrong key"}
                    if i["request_id"] == "r3"
                    else {"id": i["request_id"], "state": "issued"}
                    for i in items
                ]
            },
        )

    client = ServiceClient("http://service.test", transport=httpx.MockTransport(handler))
    big = b"x" * 200_000  # ~267 KB in base64: two fit under the 512 KiB chunk, not three
    outcomes = client.upload_results(
        "c1", 5, [UploadItem(f"r{i}", big, i, "primary") for i in range(5)]
    )
    # Five items of ~267 KB: more than one call, each under the service's 1 MiB limit.
    assert len(seen) > 1
    assert all(len(r.content) < 1_048_576 for r in seen)
    assert sum(len(json.loads(r.content)["items"]) for r in seen) == 5
    assert set(outcomes) == {f"r{i}" for i in range(5)}
    refused = outcomes["r3"]
    assert isinstance(refused, BadRequest)
    assert refused.status == 400
    assert all(outcomes[f"r{i}"] is None for i in (0, 1, 2, 4))


def test_a_batch_answer_that_forgets_an_item_is_not_taken_as_success() -> None:
    client = client_answering(200, {"items": [{"id": "r1", "state": "in_flight"}]})
    with pytest.raises(ServiceUnavailable):
        client.record_intents("c1", 5, [("r1", "pem"), ("r2", "pem")])


def test_a_registration_waits_for_the_keep_warm_round_still_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its probes hold the warm connections for a round trip; a new connection would
    cost more (TCP and TLS) than waiting for one of them to come back."""
    probes_held = threading.Event()
    release_probes = threading.Event()
    order: list[str] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/kra-certificate"):
            probes_held.set()
            release_probes.wait(5)
            with lock:
                order.append("probe")
            return httpx.Response(200, json={"certificate_pem": "x"})
        with lock:
            order.append(request.url.path.rsplit("/", 1)[-1])
        return httpx.Response(200, json={"name": "c1", "role": "active", "epoch": 7})

    # The wait's own bound far beyond the probes' release: a late timer cannot decide it.
    monkeypatch.setattr("connector.service_client._client._WARM_WAIT_S", 30.0)
    client = ServiceClient("http://service.test", transport=httpx.MockTransport(handler))
    assert client.keep_warm(2, timeout=5)
    assert probes_held.wait(5)
    threading.Timer(0.2, release_probes.set).start()
    client.register("c1", 7)
    assert order == ["probe", "probe", "register"]
    # With no round out it goes at once.
    client.register("c1", 8)
    assert order[-1] == "register"
