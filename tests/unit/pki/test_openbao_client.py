"""OpenBao driver: how HTTP answers map to the CA error tree (httpx.MockTransport), the token
rule, serial spelling and the [[ca]] kind = "openbao" validation. Behaviour against a real
OpenBao is in tests/integration/pki/test_openbao.py."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.ca import (
    CAAuthError,
    CAElectingError,
    CANotFoundError,
    CARequestRejectedError,
    CAUnavailableError,
    CertStatus,
    OpenBaoCA,
    colon_serial,
)
from connector.ca._approle import AppRoleCredentials, Token, TokenAction, token_decision
from connector.ca._openbao_client import WRITER_FRESH_S
from connector.config import ConfigError, parse_config
from tests.unit.agent.test_config import GOOD
from tests.unit.pki._ca import make_intermediate, make_root

ROOT = make_root()
ISSUING = make_intermediate(ROOT)
LOGIN = {"auth": {"client_token": "t-1", "lease_duration": 3600, "renewable": True}}

Handler = Callable[[httpx.Request], httpx.Response]


def _ca(
    handler: Handler,
    urls: tuple[str, ...] = ("http://a:8200", "http://b:8200"),
    clock: Callable[[], float] = time.monotonic,
) -> OpenBaoCA:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json=LOGIN)
        return handler(request)

    return OpenBaoCA(
        "bao",
        urls,
        "pki_primary",
        AppRoleCredentials("role", "secret"),
        certificate=ISSUING.certificate,
        parents=[ROOT.certificate],
        transport=httpx.MockTransport(route),
        clock=clock,
    )


def _errors(status: int, *messages: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": list(messages)})


def test_a_307_is_never_followed_and_the_next_node_is_tried() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            return httpx.Response(307, headers={"location": "http://dead:8200/v1/x"})
        return _errors(400, "certificate with serial 01 not found.")

    with pytest.raises(CANotFoundError):
        _ca(handler).revoke(1, "superseded")
    assert hosts == ["a", "b"]  # dead:8200 never asked


@pytest.mark.parametrize("status", [307, 429, 503])
def test_every_node_saying_not_now_is_unavailable_and_not_ambiguous(status: int) -> None:
    with pytest.raises(CAUnavailableError) as caught:
        _ca(lambda _: _errors(status, "sealed")).revoke(1, "superseded")
    assert not caught.value.ambiguous
    assert f"HTTP {status}" in str(caught.value)


def test_500_active_node_not_found_is_unavailable_but_not_ambiguous() -> None:
    with pytest.raises(CAUnavailableError) as caught:
        _ca(lambda _: _errors(500, "active cluster node not found")).revoke(1, "superseded")
    assert not caught.value.ambiguous


def test_other_500_may_have_acted() -> None:
    with pytest.raises(CAUnavailableError) as caught:
        _ca(lambda _: _errors(500, "internal error")).revoke(1, "superseded")
    assert caught.value.ambiguous


def test_400_is_rejected_and_403_after_a_fresh_login_is_auth() -> None:
    with pytest.raises(CARequestRejectedError, match="bad serial"):
        _ca(lambda _: _errors(400, "bad serial")).revoke(1, "superseded")
    calls: list[str] = []

    def forbidden(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return _errors(403, "permission denied")

    with pytest.raises(CAAuthError, match="policy"):
        _ca(forbidden).revoke(1, "superseded")
    assert len(calls) == 2  # once with the first token, once after logging in again


def test_refused_login_names_the_files() -> None:
    ca = OpenBaoCA(
        "bao",
        ["http://a:8200"],
        "pki",
        AppRoleCredentials("role", "secret"),
        certificate=ISSUING.certificate,
        parents=[ROOT.certificate],
        transport=httpx.MockTransport(lambda _: _errors(400, "invalid role or secret ID")),
    )
    with pytest.raises(CAAuthError, match="secret_id_file"):
        ca.revoke(1, "superseded")
    assert "secret" not in repr(ca._credentials).replace("secret_id", "")


def test_token_decision() -> None:
    fresh = Token("t", obtained_at=0.0, lease_s=30.0, renewable=True)
    assert token_decision(None, now=0).action is TokenAction.LOGIN
    assert token_decision(fresh, now=5).action is TokenAction.USE
    assert token_decision(fresh, now=21).action is TokenAction.RENEW
    assert token_decision(fresh, now=29.5).action is TokenAction.LOGIN
    fixed = Token("t", obtained_at=0.0, lease_s=30.0, renewable=False)
    assert token_decision(fixed, now=21).action is TokenAction.LOGIN
    assert token_decision(Token("t", 0.0, 0.0, False), now=1e9).action is TokenAction.USE
    assert "t" not in repr(fresh).replace("Token", "").replace("obtained_at", "")


def test_colon_serial_matches_openbao_spelling() -> None:
    assert colon_serial(0x68313A7C) == "68:31:3a:7c"
    assert colon_serial(0x01FF) == "01:ff"
    assert colon_serial(0) == "00"


OPENBAO = """
[[ca]]
name = "bao"
kind = "openbao"
url = "http://127.0.0.1:8200"
cluster_urls = "http://127.0.0.1:8201,http://127.0.0.1:8202"
mount = "pki_primary"
role_id_file = "/tmp/role-id"
secret_id_file = "/tmp/secret-id"
certificate = "/tmp/bao.pem"
root = "/tmp/root.pem"
"""


def _with_openbao(**changes: str | float | None) -> dict[str, object]:
    raw = tomllib.loads(GOOD + OPENBAO)
    bao = raw["ca"][-1]
    for key, value in changes.items():
        if value is None:
            bao.pop(key, None)
        else:
            bao[key] = value
    return raw


def test_openbao_ca_config_parses_and_cfssl_stays_the_default() -> None:
    config = parse_config(_with_openbao())
    assert config.ca("primary").kind == "cfssl"
    bao = config.ca("bao")
    assert bao.kind == "openbao"
    assert bao.as_spec()["mount"] == "pki_primary"


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"mount": None}, "ca[bao].mount"),
        ({"secret_id_file": None}, "ca[bao].secret_id_file"),
        ({"auth_key_file": "/tmp/k"}, "ca[bao].auth_key_file"),
        ({"certdb": "/tmp/x.db"}, "ca[bao].certdb"),
        ({"kind": "adcs"}, "ca[bao].kind"),
        ({"cluster_urls": "ftp://x"}, "ca[bao].cluster_urls[0]"),
    ],
)
def test_openbao_ca_config_errors_name_the_setting(
    changes: dict[str, str | None], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with_openbao(**changes))
    assert caught.value.setting == setting


def test_cfssl_ca_still_needs_its_auth_key() -> None:
    raw = tomllib.loads(GOOD)
    del raw["ca"][0]["auth_key_file"]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.setting == "ca[primary].auth_key_file"


def test_no_node_serving_while_one_says_electing_is_an_election() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            return _errors(500, "active cluster node not found")
        return httpx.Response(307, headers={"location": "http://dead:8200/v1/x"})

    with pytest.raises(CAElectingError) as caught:
        _ca(handler).revoke(1, "superseded")
    assert not caught.value.ambiguous
    assert "electing" in str(caught.value)


def test_a_node_still_serving_answers_while_another_elects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a":
            return _errors(500, "active cluster node not found")
        return httpx.Response(204)

    _ca(handler).revoke(1, "superseded")  # b answered: no error


def test_refused_and_sealed_everywhere_is_down_not_electing() -> None:
    with pytest.raises(CAUnavailableError) as caught:
        _ca(lambda _: _errors(503, "sealed")).revoke(1, "superseded")
    assert not isinstance(caught.value, CAElectingError)


def test_failover_patience_is_an_openbao_setting_validated_by_name() -> None:
    config = parse_config(_with_openbao(failover_patience_s=2.5))
    assert config.ca("bao").as_spec()["failover_patience_s"] == 2.5
    with pytest.raises(ConfigError) as caught:
        parse_config(_with_openbao(failover_patience_s=99.0))
    assert caught.value.setting == "ca[bao].failover_patience_s"
    raw = tomllib.loads(GOOD)
    raw["ca"][0]["failover_patience_s"] = 1.0
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.setting == "ca[primary].failover_patience_s"


def test_a_node_that_took_a_request_and_never_answered_is_asked_last_next_time() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if request.url.host == "a":  # hung: the request went in, nothing comes back
            raise httpx.ReadTimeout("timed out", request=request)
        return _errors(400, "certificate with serial 01 not found.")

    ca = _ca(handler, ("http://a:8200", "http://b:8200", "http://c:8200"))
    with pytest.raises(CAUnavailableError) as caught:
        ca.revoke(1, "superseded")
    assert caught.value.ambiguous
    assert asked == ["a"]  # it may have acted: no other node gets it in the same call
    with pytest.raises(CANotFoundError):
        ca.revoke(1, "superseded")
    assert asked == ["a", "b"]  # the next call starts after the hung node
    with pytest.raises(CANotFoundError):
        ca.revoke(1, "superseded")
    assert asked == ["a", "b", "b"]  # and stays with the node that answered


def test_connecting_to_a_node_gets_its_share_of_the_time_left() -> None:
    now = [100.0]
    connects: dict[str, float] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json=LOGIN)
        connect = request.extensions["timeout"]["connect"]
        connects[request.url.host] = connect
        if request.url.host != "c":  # accepted, the handshake never finished
            now[0] += connect
            raise httpx.ConnectTimeout("timed out", request=request)
        return _errors(400, "certificate with serial 01 not found.")

    ca = OpenBaoCA(
        "bao",
        ["http://c:8200", "http://a:8200", "http://b:8200"],
        "pki_primary",
        AppRoleCredentials("role", "secret"),
        certificate=ISSUING.certificate,
        parents=[ROOT.certificate],
        transport=httpx.MockTransport(handler),
        clock=lambda: now[0],
    )
    ca._current_token(5.0)  # logged in at c, which answers: the calls below start there
    ca._preferred = 1  # as if a had answered last
    with pytest.raises(CANotFoundError):
        ca.revoke(1, "superseded", timeout=1.5)
    # A third of the call for a, half of the rest for b, and c still has a third.
    assert connects == {"a": 0.5, "b": 0.5, "c": 0.5}


def test_reads_start_at_the_node_that_last_took_a_write() -> None:
    asked: list[tuple[str, str]] = []
    hung = {"b": False}

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        asked.append((request.method, host))
        if request.method == "POST":  # a redirects writes: a standby, or a resumed node
            if host == "a":
                return httpx.Response(307, headers={"location": "http://b:8200/v1/x"})
            return httpx.Response(204)
        if host == "b" and hung["b"]:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"data": {"certificate": "", "revocation_time": 0}})

    ca = _ca(handler, ("http://a:8200", "http://b:8200", "http://c:8200"))
    ca.revoke(1, "superseded")  # a says "not me", b takes it
    assert asked[-2:] == [("POST", "a"), ("POST", "b")]
    ca._preferred = 2  # as if c had answered since
    assert ca.status(1) is CertStatus.UNKNOWN  # no certificate in the (stub) answer
    assert asked[-1] == ("GET", "b")  # the read went to the writer, not to c
    hung["b"] = True
    with pytest.raises(CAUnavailableError):
        ca.status(1)
    hung["b"] = False
    ca.status(1)
    assert asked[-1] == ("GET", "c")  # the writer that went silent is no longer asked first


# -- a search reads at the node that takes writes (a resumed node's copy may be stale) --


KEY = ec.generate_private_key(ec.SECP256R1())
LEAF = ISSUING.sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "u1")]), KEY.public_key())
THREE = ("http://a:8200", "http://b:8200", "http://c:8200")
RENEWED = {"auth": {"client_token": "t-1", "lease_duration": 3600, "renewable": True}}


def _cluster(serving: dict[str, str], asked: list[tuple[str, str]]) -> Handler:
    """``serving["node"]`` takes writes and holds LEAF; the others redirect writes to
    ``serving["redirect"]`` and list nothing (a stale copy), as OpenBao 2.7.2 did with a
    node that resumed from a hang (docs/pki.md, "OpenBao clusters")."""

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        asked.append((request.method, host))
        if request.method == "POST":
            if host != serving["node"]:
                return httpx.Response(307, headers={"location": serving["redirect"]})
            return httpx.Response(200, json=RENEWED)
        if host == serving.get("down"):
            raise httpx.ConnectError("refused")
        if request.method == "LIST":
            keys = [colon_serial(LEAF.serial_number)] if host == serving["node"] else []
            return httpx.Response(200, json={"data": {"keys": keys}})
        pem = LEAF.public_bytes(serialization.Encoding.PEM).decode()
        return httpx.Response(200, json={"data": {"certificate": pem, "revocation_time": 0}})

    return handler


def test_a_search_with_no_known_writer_reads_where_a_token_renewal_is_taken() -> None:
    asked: list[tuple[str, str]] = []
    # a resumed from a hang and still says it is active; b is the node its cluster elected.
    ca = _ca(_cluster({"node": "b", "redirect": "http://a:8200/v1/x"}, asked), THREE)
    ca._current_token(None)  # logged in before: the login's node is not known as the writer
    ca._writer, ca._preferred = None, 0  # a answered last: reads used to start there
    asked.clear()
    found = ca.find(KEY.public_key())
    assert [c.serial for c in found] == [LEAF.serial_number]
    assert asked[:2] == [("POST", "a"), ("POST", "b")]  # the renewal: a redirects, b takes it
    assert {host for method, host in asked if method != "POST"} == {"b"}


def test_a_search_whose_writer_fails_a_read_cannot_tell_and_looks_again_next_time() -> None:
    asked: list[tuple[str, str]] = []
    serving = {"node": "b", "redirect": "http://b:8200/v1/x", "down": "b"}
    ca = _ca(_cluster(serving, asked), THREE, clock=lambda: 100.0)  # the writer stays fresh
    ca.revoke(1, "superseded")  # b takes a write: b is the writer
    with pytest.raises(CAUnavailableError, match="cannot connect"):
        ca.find(KEY.public_key())
    assert not [h for m, h in asked if m == "LIST" and h != "b"]  # no read went elsewhere
    # The cluster elects c; the next search finds it by a renewal, not by asking around.
    serving.update(node="c", redirect="http://c:8200/v1/x", down="")
    asked.clear()
    assert [c.serial for c in ca.find(KEY.public_key())] == [LEAF.serial_number]
    assert ("POST", "c") in asked
    assert {host for method, host in asked if method != "POST"} == {"c"}


def test_a_search_where_no_node_takes_a_write_cannot_tell() -> None:
    asked: list[tuple[str, str]] = []
    ca = _ca(_cluster({"node": "nobody", "redirect": "http://a:8200/v1/x"}, asked), THREE)
    ca._token = Token("t-1", obtained_at=time.monotonic(), lease_s=3600, renewable=True)
    with pytest.raises(CAUnavailableError, match="HTTP 307"):
        ca.find(KEY.public_key())
    assert all(method == "POST" for method, _ in asked)  # nothing read: never "nothing issued"


def test_a_search_for_several_keys_lists_the_mount_once() -> None:
    asked: list[tuple[str, str]] = []
    serving = {"node": "b", "redirect": "http://b:8200/v1/x"}
    ca = _ca(_cluster(serving, asked), THREE, clock=lambda: 100.0)
    ca.revoke(1, "superseded")  # b takes a write: b is the writer
    asked.clear()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    found = ca.find_many([KEY.public_key(), other, KEY.public_key()])
    assert [[c.serial for c in certs] for certs in found] == [
        [LEAF.serial_number],
        [],
        [LEAF.serial_number],
    ]
    assert [m for m, _ in asked].count("LIST") == 1
    assert "POST" not in [m for m, _ in asked]  # a fresh writer needs no renewal


def test_a_writer_quiet_for_longer_than_it_stays_fresh_is_confirmed_by_a_renewal() -> None:
    asked: list[tuple[str, str]] = []
    now = [100.0]
    serving = {"node": "b", "redirect": "http://b:8200/v1/x"}
    ca = _ca(_cluster(serving, asked), THREE, clock=lambda: now[0])
    ca.revoke(1, "superseded")  # b takes a write: b is the writer
    # While this client sent nothing, b hung, c was elected, and b resumed still
    # thinking it is active: it redirects writes and reads from a stale copy.
    serving.update(node="c", redirect="http://b:8200/v1/x")
    now[0] += WRITER_FRESH_S + 0.5
    asked.clear()
    assert [c.serial for c in ca.find(KEY.public_key())] == [LEAF.serial_number]
    assert asked[:2] == [("POST", "b"), ("POST", "c")]  # the renewal: b redirects, c takes it
    assert {host for method, host in asked if method != "POST"} == {"c"}
