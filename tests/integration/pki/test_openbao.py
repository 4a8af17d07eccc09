"""The OpenBao driver against a real OpenBao: issuance, revocation (CRL and OCSP),
reconciliation by listing, AppRole token handling, and a Raft active node killed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from chaos.launch.openbao import OpenBaoLab
from connector.ca import (
    CAAuthError,
    CANotFoundError,
    CARouter,
    CAUnavailableError,
    CertStatus,
    OpenBaoCA,
    ca_from_dict,
    router_from_description,
)
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key

VARIABLES = {
    "UserName": "alice smith",
    "UserPrincipalName": "alice@contoso.test",
    "EmailAddress": "alice@contoso.test",
    "DeviceId": "5f3c9a2e-0d1b-4c7e-9a61-2b8f0e4d7c11",
}
PROFILE = ProfileTemplate(
    "p",
    "CN={{UserName}},SERIALNUMBER={{DeviceId}}",
    ("UPN={{UserPrincipalName}}", "email={{EmailAddress}}", "URI=IntuneDeviceId://{{DeviceId}}"),
    KeyType.P256,
    "user-auth",
)


@pytest.fixture
def router(openbao_dev: OpenBaoLab) -> Iterator[CARouter]:
    router = router_from_description(openbao_dev.describe("c1"))
    yield router
    router.close()


def _csr(key_type: KeyType = KeyType.P256) -> tuple[x509.CertificateSigningRequest, object]:
    key = generate_key(key_type)
    return csr_for_profile(key, PROFILE, VARIABLES), key


def test_issue_keeps_the_csr_subject_and_sans_and_carries_cdp_and_aia(router: CARouter) -> None:
    csr, _ = _csr(KeyType.RSA2048)
    issued = router.issue(csr, "user-auth", "r1", time.monotonic() + 10)
    cert = issued.certificate
    assert issued.ca_name == "primary"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice smith"
    assert (
        cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
        == (VARIABLES["DeviceId"])
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # Kept, with the scheme lower-cased (Go's URL parser; schemes are case-insensitive).
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"intunedeviceid://{VARIABLES['DeviceId']}"
    ]
    assert sans.get_values_for_type(x509.DNSName) == []  # the CN is not copied in
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert any("/v1/pki_primary/crl" in str(p.full_name) for p in cdp)
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert any(d.access_method == AuthorityInformationAccessOID.OCSP for d in aia)


def test_revocation_shows_in_status_crl_and_ocsp_and_find_reports_it(router: CARouter) -> None:
    ca = router.cas["primary"]
    assert isinstance(ca, OpenBaoCA)
    csr, key = _csr()
    kept = router.issue(csr, "user-auth", "r-kept", time.monotonic() + 10)
    csr, key = _csr()
    issued = router.issue(csr, "user-auth", "r2", time.monotonic() + 10)
    assert [f.serial for f in router.find(key.public_key())] == [issued.serial]  # type: ignore[attr-defined]
    assert ca.ocsp_status(issued.certificate) is CertStatus.GOOD
    router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 10)
    router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 10)  # idempotent
    assert ca.status(issued.serial) is CertStatus.REVOKED
    assert ca.ocsp_status(issued.certificate) is CertStatus.REVOKED
    assert ca.ocsp_status(kept.certificate) is CertStatus.GOOD
    revoked = {entry.serial_number for entry in ca.crl()}
    assert issued.serial in revoked
    assert kept.serial not in revoked
    [found] = router.find(key.public_key())  # type: ignore[attr-defined]
    assert found.revoked
    assert router.find(generate_key(KeyType.P256).public_key()) == []
    with pytest.raises(CANotFoundError):
        ca.revoke(12345, "superseded")


def test_a_refused_token_is_replaced_by_a_new_login(openbao_dev: OpenBaoLab) -> None:
    ca = ca_from_dict(openbao_dev.describe("c2")["cas"]["secondary"])
    assert isinstance(ca, OpenBaoCA)
    try:
        csr, _ = _csr()
        ca.issue(csr, "smime", "r3", timeout=5)
        token = ca._token
        assert token is not None
        # Revoked by the operator (the connector's own policy cannot revoke it).
        openbao_dev._api("POST", "auth/token/revoke", {"token": token.value})
        csr, _ = _csr()
        assert ca.issue(csr, "smime", "r4", timeout=5).ca_name == "secondary"
        assert ca._token is not None
        assert ca._token.value != token.value
    finally:
        ca.close()


def test_the_token_is_renewed_under_the_connector_policy_alone(openbao_dev: OpenBaoLab) -> None:
    # The AppRoles carry no "default" policy: renew-self must be in pfxha's own.
    ca = ca_from_dict(openbao_dev.describe("c1")["cas"]["primary"])
    assert isinstance(ca, OpenBaoCA)
    now = [1000.0]
    ca._clock = lambda: now[0]
    try:
        ca.issue(_csr()[0], "user-auth", "r-renew-1", timeout=5)
        first = ca._token
        assert first is not None
        assert first.renewable
        now[0] += first.lease_s * 0.7  # past two thirds of the lease: renew, not log in
        ca.issue(_csr()[0], "user-auth", "r-renew-2", timeout=5)
        assert ca._token is not None
        assert (ca._token.value, ca._token.obtained_at) == (first.value, now[0])
    finally:
        ca.close()


def test_wrong_secret_id_is_an_auth_error(openbao_dev: OpenBaoLab, tmp_path: Path) -> None:
    spec = dict(openbao_dev.describe("c1")["cas"]["primary"])
    wrong = tmp_path / "secret-id"
    wrong.write_text("00000000-0000-0000-0000-000000000000")
    wrong.chmod(0o600)
    spec["secret_id_file"] = str(wrong)
    ca = ca_from_dict(spec)
    try:
        with pytest.raises(CAAuthError, match="secret_id_file"):
            ca.issue(_csr()[0], "user-auth", "r5", timeout=5)
    finally:
        ca.close()


def _signs_again(ca: OpenBaoCA, within_s: float = 60.0) -> list[str]:
    """Issue until the CA signs (each try with a 2 s deadline); the errors on the way."""
    deadline = time.monotonic() + within_s
    errors: list[str] = []
    while True:
        try:
            issued = ca.issue(_csr()[0], "user-auth", "after", timeout=2)
        except CAUnavailableError as exc:
            errors.append(str(exc))
            assert time.monotonic() < deadline, errors[-3:]
            time.sleep(0.1)
            continue
        assert issued.ca_name == "primary"
        return errors


@pytest.fixture
def raft_lab(tmp_path: Path) -> Iterator[OpenBaoLab]:
    """A 3-node Raft cluster, stopped however the test (or its start) ends."""
    lab = OpenBaoLab(tmp_path / "raft", nodes=3, connectors=("c1",), issuing=("primary",))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def test_raft_active_node_killed_signing_resumes(raft_lab: OpenBaoLab) -> None:
    lab = raft_lab
    ca = ca_from_dict(lab.describe("c1")["cas"]["primary"])
    assert isinstance(ca, OpenBaoCA)
    try:
        ca.issue(_csr()[0], "user-auth", "before", timeout=5)
        active = lab.active_node()
        assert active is not None
        lab.kill(active)
        _signs_again(ca)
        assert lab.active_node() not in (None, active)
    finally:
        ca.close()


def test_raft_active_node_hung_its_cluster_signs_while_it_hangs(raft_lab: OpenBaoLab) -> None:
    """SIGSTOP of the active node: its connections stay open and silent. Calls that
    reached it are lost (ambiguous), and later ones go to the node elected meanwhile."""
    lab = raft_lab
    ca = ca_from_dict(lab.describe("c1")["cas"]["primary"])
    assert isinstance(ca, OpenBaoCA)
    try:
        ca.issue(_csr()[0], "user-auth", "before", timeout=5)  # a kept-alive connection to it
        active = lab.active_node()
        assert active is not None
        lab.pause(active)
        try:
            errors = _signs_again(ca)
            assert lab.running(active)  # hung, not gone: signed by the cluster around it
            # A search finds it while the old active node still hangs: reads start at
            # the node that took the last write, not at the node that answered first.
            csr, key = _csr()
            issued = ca.issue(csr, "user-auth", "searched", timeout=5)
            assert [f.serial for f in ca.find(key.public_key())] == [issued.serial]  # type: ignore[attr-defined]
        finally:
            lab.resume(active)
        assert errors, "no call was lost to the hung node: nothing was tested"
        assert "no answer" in errors[0]
    finally:
        ca.close()


def test_a_dev_server_whose_port_is_taken_starts_on_fresh_ports(tmp_path: Path) -> None:
    lab = OpenBaoLab(tmp_path / "dev", nodes=0, connectors=("c1",), issuing=("primary",))
    (node,) = lab.nodes.values()
    taken = node.port
    # Another program binds the port picked for the dev server before the server does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        lab.start()
        try:
            (moved,) = lab.nodes.values()
            assert moved.port != taken
            assert lab.active_node() == moved.name
        finally:
            lab.stop()
