"""The connector's httpx client: no cookies kept or sent, each URL parsed once."""

from __future__ import annotations

import httpx
import pytest

from connector._http import _URL_CACHE_SIZE, LeanClient


def _recording() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"}, json={})

    return httpx.MockTransport(answer), seen


def test_a_cookie_the_server_sets_is_never_sent_back() -> None:
    transport, seen = _recording()
    with LeanClient(base_url="https://service.test", transport=transport) as client:
        client.get(client.url_for("/a"))
        client.get(client.url_for("/b"))
        assert len(client.cookies) == 0
        with pytest.raises(TypeError, match="no cookies"):
            client.cookies = {"session": "forced"}
    assert [r.headers.get("cookie") for r in seen] == [None, None]
    with pytest.raises(TypeError):
        LeanClient(cookies={"a": "b"})  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("base", "path"),
    [
        ("https://service.test", "/api/v1/connector/heartbeat"),
        ("https://service.test/prefix", "/api/v1/connector/heartbeat"),
        ("https://service.test/prefix/", "api/v1/x?y=1"),
        ("", "https://ca1.test:8888/api/v1/cfssl/authsign"),
    ],
)
def test_url_for_is_the_url_httpx_itself_would_request(base: str, path: str) -> None:
    with LeanClient(base_url=base) as lean, httpx.Client(base_url=base) as plain:
        assert lean.url_for(path) == plain.build_request("GET", path).url
        assert lean.url_for(path) is lean.url_for(path)  # parsed once


def test_the_url_cache_is_bounded() -> None:
    with LeanClient(base_url="https://service.test") as client:
        urls = [client.url_for(f"/requests/{i}") for i in range(_URL_CACHE_SIZE + 10)]
        assert len(client._urls) == _URL_CACHE_SIZE
        assert client.url_for("/requests/70") == urls[70]
