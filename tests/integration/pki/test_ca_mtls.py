"""No anonymous path to the CA (issue 18, part 1), against the lab's real CFSSL servers.

CFSSL 1.2 answers ``newcert`` and ``revoke`` (``removeFromCRL`` included)
without any credential; the lab serves every CA with mutual TLS and a CN
allow-list. Refused here: no client certificate, a certificate of another
CA, a certificate of the access CA whose CN is not allowed, a connector
whose access was denied. Nothing they try changes the certdb.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.launch.cfssl import CfsslLab
from chaos.launch.service import self_signed_loopback
from connector.ca import CAAuthError, CertStatus, CfsslCA
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key

NEWCERT = {"request": {"CN": "intruder", "hosts": ["intruder.example"]}}


def _csr(name: str) -> Any:
    profile = ProfileTemplate("p", "CN={{UserName}}", [], KeyType.P256, "user-auth")
    return csr_for_profile(
        generate_key(KeyType.P256), profile, {"UserName": name, "DeviceId": f"{name}-device"}
    )


def _revoke_body(serial: int, reason: str) -> dict[str, str]:
    return {"serial": str(serial), "authority_key_id": "", "reason": reason}


@pytest.fixture
def revoked_serial(cfssl_cas: CfsslLab) -> Iterator[int]:
    """A certificate the lab's own (allowed) client issued and revoked at the primary."""
    ca = CfsslCA.from_dict(cfssl_cas.describe()["cas"]["primary"])
    try:
        issued = ca.issue(_csr("mtls-victim"), "user-auth", "mtls-1", timeout=10.0)
        ca.revoke(issued.serial, "keyCompromise", timeout=10.0)
        assert ca.status(issued.serial) is CertStatus.REVOKED
        yield issued.serial
    finally:
        ca.close()


def _attempts(url: str, serial: int) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "newcert": (f"{url}/api/v1/cfssl/newcert", NEWCERT),
        "revoke": (f"{url}/api/v1/cfssl/revoke", _revoke_body(serial, "superseded")),
        "removeFromCRL": (f"{url}/api/v1/cfssl/revoke", _revoke_body(serial, "removeFromCRL")),
        "init_ca": (f"{url}/api/v1/cfssl/init_ca", {"CN": "x", "key": {"algo": "ecdsa"}}),
    }


def _plain_http_refused(url: str, body: dict[str, Any]) -> bool:
    """Go's TLS server answers a plain request 400 or resets the connection."""
    try:
        plain = httpx.post(url, json=body, timeout=5.0)
    except httpx.TransportError:
        return True
    return plain.status_code == 400 and "HTTPS server" in plain.text


def test_without_a_client_certificate_nothing_gets_past_tls(
    cfssl_cas: CfsslLab, revoked_serial: int, tmp_path: Path
) -> None:
    anonymous = ssl.create_default_context(cafile=str(cfssl_cas.access.ca_path))
    other = ssl.create_default_context(cafile=str(cfssl_cas.access.ca_path))
    other.load_cert_chain(*map(str, self_signed_loopback(tmp_path / "other")))
    for name in cfssl_cas.names:
        for what, (url, body) in _attempts(cfssl_cas.url(name), revoked_serial).items():
            for context in (anonymous, other):
                with pytest.raises(httpx.TransportError):
                    httpx.post(url, json=body, verify=context, timeout=5.0)
            assert _plain_http_refused(url.replace("https://", "http://"), body), what
    assert cfssl_cas.certdb("primary").by_serial(revoked_serial).revoked  # type: ignore[union-attr]


def test_a_certificate_of_the_access_ca_with_a_cn_not_allowed_is_refused(
    cfssl_cas: CfsslLab, revoked_serial: int
) -> None:
    assert "stranger" not in cfssl_cas.clients
    with cfssl_cas.http("stranger") as http:
        for name in cfssl_cas.names:
            for what, (url, body) in _attempts(cfssl_cas.url(name), revoked_serial).items():
                reply = http.post(url, json=body)
                assert reply.text.strip() == "Invalid CN", f"{name} {what}: {reply.text[:80]}"
    # removeFromCRL did not undo the connector's revocation.
    assert cfssl_cas.certdb("primary").by_serial(revoked_serial).revoked  # type: ignore[union-attr]


def test_a_denied_connector_loses_its_ca_access(cfssl_cas: CfsslLab) -> None:
    cfssl_cas.allow("c-denied")
    ca = CfsslCA.from_dict(
        {**cfssl_cas.describe()["cas"]["primary"], **cfssl_cas.client_spec("c-denied")}
    )
    try:
        assert ca.issue(_csr("before-deny"), "user-auth", "deny-1", timeout=10.0).serial > 0
        cfssl_cas.deny("c-denied")
        assert "c-denied" not in cfssl_cas.clients
        with pytest.raises(CAAuthError, match="Invalid CN"):
            ca.issue(_csr("after-deny"), "user-auth", "deny-2", timeout=10.0)
    finally:
        ca.close()
        cfssl_cas.deny("c-denied")
