"""The CFSSL client's classification and validation of answers (httpx MockTransport)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.ca import (
    CAAuthError,
    CABadResponseError,
    CANotFoundError,
    CARequestRejectedError,
    CAUnavailableError,
    CfsslCA,
    is_retryable,
)
from connector.pki import KeyType, build_csr, generate_key
from tests.unit.pki._ca import NOW, TestCA, make_intermediate, make_root

AUTH_KEY = "00112233445566778899aabbccddeeff"
VARS = {"UserName": "carol", "DeviceId": "dev-9"}

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def hierarchy() -> tuple[TestCA, TestCA]:
    root = make_root()
    return root, make_intermediate(root)


def _client(hierarchy: tuple[TestCA, TestCA], handler: Handler) -> CfsslCA:
    root, issuing = hierarchy
    return CfsslCA(
        "primary",
        "http://ca.test",
        AUTH_KEY,
        certificate=issuing.certificate,
        parents=[root.certificate],
        transport=httpx.MockTransport(handler),
    )


def _ok(cert: x509.Certificate) -> httpx.Response:
    pem = cert.public_bytes(Encoding.PEM).decode()
    return httpx.Response(200, json={"success": True, "result": {"certificate": pem}})


def _csr():  # type: ignore[no-untyped-def]
    key = generate_key(KeyType.P256)
    return build_csr(key, "CN={{UserName}}", [], VARS), key


def test_authsign_request_is_hmac_authenticated_and_a_good_answer_is_accepted(
    hierarchy: tuple[TestCA, TestCA],
) -> None:
    _, issuing = hierarchy
    csr, _ = _csr()
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/cfssl/authsign"
        body = json.loads(request.content)
        seen.append(body)
        return _ok(issuing.sign(csr.subject, csr.public_key()))

    issued = _client(hierarchy, handler).issue(csr, "user-auth", "r1")
    raw = base64.b64decode(seen[0]["request"])
    expected = hmac.new(bytes.fromhex(AUTH_KEY), raw, hashlib.sha256).digest()
    assert base64.b64decode(seen[0]["token"]) == expected
    assert json.loads(raw)["profile"] == "user-auth"
    assert issued.ca_name == "primary"
    assert issued.chain[0] == issuing.certificate


def _bad_cert_cases(
    hierarchy: tuple[TestCA, TestCA], csr: x509.CertificateSigningRequest
) -> dict[str, x509.Certificate]:
    _root, issuing = hierarchy
    stranger = make_root("Stranger")
    other_key = generate_key(KeyType.P256)
    return {
        "public key": issuing.sign(csr.subject, other_key.public_key()),
        "issuer": stranger.sign(csr.subject, csr.public_key()),
        "signature": stranger.sign(
            csr.subject, csr.public_key(), issuer_name=issuing.certificate.subject
        ),
        "not valid now": issuing.sign(
            csr.subject,
            csr.public_key(),
            not_before=NOW - dt.timedelta(days=10),
            not_after=NOW - dt.timedelta(days=1),
        ),
        "CA certificate": issuing.sign(csr.subject, csr.public_key(), ca=True),
        "extended key usage": issuing.sign(
            csr.subject, csr.public_key(), ekus=(ExtendedKeyUsageOID.EMAIL_PROTECTION,)
        ),
        "device id": issuing.sign(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol")]), csr.public_key()
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "public key",
        "issuer",
        "signature",
        "not valid now",
        "CA certificate",
        "extended key usage",
        "device id",
    ],
)
def test_wrong_certificates_are_rejected_as_bad_responses(
    hierarchy: tuple[TestCA, TestCA], case: str
) -> None:
    csr, _ = _csr()
    cert = _bad_cert_cases(hierarchy, csr)[case]
    client = _client(hierarchy, lambda _: _ok(cert))
    with pytest.raises(CABadResponseError, match=case.split()[0]) as caught:
        client.issue(csr, "user-auth", "r1")
    assert is_retryable(caught.value)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(200, content=b"\x00\x01garbage"), CABadResponseError),
        (httpx.Response(200, json={"hello": "world"}), CABadResponseError),
        (
            httpx.Response(
                200, json={"success": True, "result": {"certificate": "-----BEGIN CERT"}}
            ),
            CABadResponseError,
        ),
        (httpx.Response(200, json={"success": True, "result": {}}), CABadResponseError),
        (httpx.Response(502, text="bad gateway"), CAUnavailableError),
        (
            httpx.Response(
                400,
                json={"success": False, "errors": [{"code": 400, "message": "invalid token"}]},
            ),
            CAAuthError,
        ),
        (
            httpx.Response(
                400,
                json={"success": False, "errors": [{"code": 9002, "message": "CSR Decode failed"}]},
            ),
            CARequestRejectedError,
        ),
        (
            httpx.Response(
                400,
                json={"success": False, "errors": [{"code": 11000, "message": "db locked"}]},
            ),
            CAUnavailableError,
        ),
    ],
)
def test_answers_are_classified(
    hierarchy: tuple[TestCA, TestCA], response: httpx.Response, error: type[Exception]
) -> None:
    csr, _ = _csr()
    with pytest.raises(error):
        _client(hierarchy, lambda _: response).issue(csr, "user-auth", "r1")


def test_transport_failures_are_unavailable_and_read_timeouts_are_ambiguous(
    hierarchy: tuple[TestCA, TestCA],
) -> None:
    csr, _ = _csr()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(CAUnavailableError) as refused:
        _client(hierarchy, refuse).issue(csr, "user-auth", "r1")
    assert not refused.value.ambiguous
    with pytest.raises(CAUnavailableError) as hung:
        _client(hierarchy, hang).issue(csr, "user-auth", "r1")
    assert hung.value.ambiguous


def test_revoke_sends_decimal_serial_and_empty_aki_and_maps_not_found(
    hierarchy: tuple[TestCA, TestCA],
) -> None:
    bodies: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if bodies[-1]["serial"] == "7":
            return httpx.Response(
                400,
                json={
                    "success": False,
                    "errors": [{"code": 11200, "message": "certificate not found"}],
                },
            )
        return httpx.Response(200, json={"success": True, "result": {}})

    client = _client(hierarchy, handler)
    client.revoke(0xABCDEF, "keyCompromise")
    assert bodies[0] == {"serial": str(0xABCDEF), "authority_key_id": "", "reason": "keycompromise"}
    with pytest.raises(CANotFoundError):
        client.revoke(7, "superseded")
    with pytest.raises(CARequestRejectedError):
        client.revoke(8, "because")
    assert len(bodies) == 2  # a bad reason never reaches the CA


def test_unknown_template_never_reaches_cfssl(hierarchy: tuple[TestCA, TestCA]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be called")

    csr, _ = _csr()
    with pytest.raises(CARequestRejectedError, match="unknown template"):
        _client(hierarchy, handler).issue(csr, "code-signing", "r1")
