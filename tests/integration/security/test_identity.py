"""Connector identity and device authentication against a real HTTPS service (issue 8).

One service with mutual TLS required; connectors enroll with one-time tokens,
call with their certificate, renew it, and are refused once revoked.
"""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chaos.launch._process import LaunchError
from chaos.launch.service import ServiceProcess, ServiceTLS, self_signed_loopback
from chaos.service.clients import AdminClient, DeviceClient, DeviceCredentials
from connector.identity import (
    CertificateRenewer,
    ConnectorIdentity,
    EnrollmentError,
    InsecureFileError,
    enroll,
    renew_if_due,
)
from connector.service_client import BadRequest, ServiceClient, StaleEpochError
from tests.fixtures.service import next_epoch, unique


def _client(svc: ServiceProcess, identity: ConnectorIdentity | None) -> ServiceClient:
    return ServiceClient(
        svc.url,
        verify=str(svc.tls.server_ca) if svc.tls else True,
        cert=identity.cert_pair if identity else None,
        timeout=5.0,
    )


def _enroll(svc: ServiceProcess, name: str, out: Path) -> ConnectorIdentity:
    assert svc.tls is not None
    return enroll(svc.url, svc.enrollment_token(name), out, verify=str(svc.tls.server_ca))


def _auth_refusals(admin: httpx.Client, api: str) -> float:
    total = 0.0
    for line in admin.get("/metrics").text.splitlines():
        if line.startswith("pfxha_service_auth_refusals_total{") and f'api="{api}"' in line:
            total += float(line.split()[-1])
    return total


@pytest.fixture
def secure_admin(secure_service: ServiceProcess) -> Iterator[httpx.Client]:
    with secure_service.admin_client() as client:
        yield client


def test_cli_enrolls_with_a_token_file_and_keeps_the_key_private(
    secure_service: ServiceProcess, tmp_path: Path
) -> None:
    assert secure_service.tls is not None
    name = unique("conn")
    token_file = tmp_path / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, secure_service.enrollment_token(name).encode())
    os.close(fd)
    out = tmp_path / "identity"
    argv = [str(Path(sys.executable).parent / "pfxha"), "connector", "enroll"]
    argv += ["--service", secure_service.url, "--token-file", str(token_file)]
    argv += ["--out", str(out), "--ca-file", str(secure_service.tls.server_ca)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    identity = ConnectorIdentity.load(out)
    assert identity.name == name
    assert stat.S_IMODE(identity.key_path.stat().st_mode) == 0o600
    # The token is single use: the same file a second time is refused.
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0
    assert "enrollment token unknown, used or expired" in again.stderr
    # A token file others may read is refused before anything is sent.
    token_file.chmod(0o644)
    loose = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert loose.returncode != 0
    assert "chmod 600" in loose.stderr


def test_connector_api_needs_an_enrolled_certificate_with_its_own_name(
    secure_service: ServiceProcess, secure_admin: httpx.Client, tmp_path: Path
) -> None:
    name = unique("conn")
    identity = _enroll(secure_service, name, tmp_path / "id")
    before = _auth_refusals(secure_admin, "connector")
    epoch = next_epoch(secure_admin)
    with _client(secure_service, None) as anonymous:
        with pytest.raises(BadRequest) as no_cert:
            anonymous.register(name, epoch)
        assert no_cert.value.status == 401
    with _client(secure_service, identity) as client:
        with pytest.raises(BadRequest) as other_name:
            client.register(unique("intruder"), epoch)
        assert other_name.value.status == 403
        client.register(name, epoch)
        assert client.heartbeat(name, epoch, "healthy", {}) == "active"
        assert client.poll_requests(name, epoch, max_items=1, wait_s=0) is not None
    assert _auth_refusals(secure_admin, "connector") == before + 2


def test_a_device_certificate_is_no_connector_certificate(
    secure_service: ServiceProcess, secure_admin: httpx.Client, tmp_path: Path
) -> None:
    device = _make_device(secure_service)
    context = secure_service.verify
    assert isinstance(context, ssl.SSLContext)
    DeviceClient(secure_service.url, device, verify=context).close()  # loads its cert into context
    with httpx.Client(base_url=secure_service.url, verify=context) as http:
        answer = http.post(
            "/api/v1/connector/register", json={"name": device.device_id, "epoch": 1}
        )
    assert answer.status_code == 403


def test_revoked_connector_is_refused_and_cannot_renew(
    secure_service: ServiceProcess, secure_admin: httpx.Client, tmp_path: Path
) -> None:
    assert secure_service.tls is not None
    name = unique("conn")
    identity = _enroll(secure_service, name, tmp_path / "id")
    epoch = next_epoch(secure_admin)
    with _client(secure_service, identity) as client:
        client.register(name, epoch)
        revoked = secure_admin.post(f"/api/v1/admin/connectors/{name}/revoke", json={})
        assert revoked.status_code == 200
        with pytest.raises(BadRequest) as refused:
            client.heartbeat(name, epoch, "healthy", {})
        assert refused.value.status == 403
    with pytest.raises(EnrollmentError, match="403"):
        renew_if_due(
            identity,
            secure_service.url,
            verify=str(secure_service.tls.server_ca),
            remaining_fraction=1.0,
        )
    token = secure_admin.post(f"/api/v1/admin/connectors/{name}/enrollment-token", json={})
    assert token.status_code == 403


class _Expiry:
    def __init__(self) -> None:
        self.values: list[object] = []

    def set_certificate_expiry(self, not_after: object, not_before: object = None) -> None:
        self.values.append(not_after)


def test_renewal_swaps_in_a_new_key_and_certificate(
    secure_service: ServiceProcess, secure_admin: httpx.Client, tmp_path: Path
) -> None:
    assert secure_service.tls is not None
    name = unique("conn")
    identity = _enroll(secure_service, name, tmp_path / "id")
    old_serial, old_key = identity.certificate().serial_number, identity.key_path.read_bytes()
    metric = _Expiry()
    verify = str(secure_service.tls.server_ca)
    assert not renew_if_due(identity, secure_service.url, verify=verify, metrics=metric)
    assert renew_if_due(
        identity, secure_service.url, verify=verify, remaining_fraction=1.0, metrics=metric
    )
    assert identity.certificate().serial_number != old_serial
    assert identity.key_path.read_bytes() != old_key
    assert stat.S_IMODE(identity.key_path.stat().st_mode) == 0o600
    assert len(metric.values) == 2
    with _client(secure_service, identity) as client:
        client.register(name, next_epoch(secure_admin))


def test_identity_with_a_readable_key_is_refused(
    secure_service: ServiceProcess, tmp_path: Path
) -> None:
    identity = _enroll(secure_service, unique("conn"), tmp_path / "id")
    identity.key_path.chmod(0o640)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        ConnectorIdentity.load(identity.directory)


def _make_device(svc: ServiceProcess) -> DeviceCredentials:
    with AdminClient(svc.url, token=svc.admin_token, verify=svc.verify) as admin:
        user = unique("u")
        admin.create_user(user, "U", f"{user}@example.test", f"{user}@example.test")
        return admin.create_device(unique("dev"), user)


def test_devices_authenticate_with_their_management_certificate(
    secure_service: ServiceProcess, secure_admin: httpx.Client
) -> None:
    mine, other = _make_device(secure_service), _make_device(secure_service)
    with httpx.Client(base_url=secure_service.url, verify=secure_service.verify) as anonymous:
        assert anonymous.post(f"/api/v1/devices/{mine.device_id}/checkin").status_code == 401
    device = DeviceClient(secure_service.url, mine, verify=secure_service.verify)
    try:
        assert device.checkin()["deliveries"] == []
    finally:
        device.close()
    context = secure_service.verify
    assert isinstance(context, ssl.SSLContext)
    DeviceClient(secure_service.url, other, verify=context).close()
    with httpx.Client(base_url=secure_service.url, verify=context) as impostor:
        answer = impostor.post(f"/api/v1/devices/{mine.device_id}/checkin")
    assert answer.status_code == 403


def test_admin_api_needs_the_admin_credential(secure_service: ServiceProcess) -> None:
    with httpx.Client(base_url=secure_service.url, verify=secure_service.verify) as anonymous:
        assert anonymous.get("/api/v1/read/connectors").status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (
            anonymous.post(
                "/api/v1/admin/connectors/x/enrollment-token", json={}, headers=wrong
            ).status_code
            == 401
        )


def test_renewer_renews_and_the_client_presents_the_new_certificate(
    secure_service: ServiceProcess, secure_admin: httpx.Client, tmp_path: Path
) -> None:
    assert secure_service.tls is not None
    name = unique("conn")
    identity = _enroll(secure_service, name, tmp_path / "id")
    old_serial = identity.certificate().serial_number
    verify = str(secure_service.tls.server_ca)
    with _client(secure_service, identity) as client:
        epoch = next_epoch(secure_admin)
        client.register(name, epoch)
        renewer = CertificateRenewer(
            identity,
            secure_service.url,
            verify=verify,
            reload=client.reload_client_certificate,
            remaining_fraction=1.0,
        )
        assert renewer.check()
        assert identity.certificate().serial_number != old_serial
        assert client.heartbeat(name, epoch, "healthy", {}) == "active"
    renewed_serial = identity.certificate().serial_number
    unreachable = "https://127.0.0.1:1"
    failing = CertificateRenewer(identity, unreachable, verify=verify, remaining_fraction=1.0)
    assert not failing.check()  # unreachable: logged, the pair kept
    assert identity.certificate().serial_number == renewed_serial


def test_service_refuses_to_start_unsafely(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    cert, key = self_signed_loopback(tmp_path / "tls")
    mutual = ServiceTLS(cert, key, server_ca=cert, require_client_certs=True)
    with pytest.raises(LaunchError, match="needs an admin credential"):
        start_service(tls=mutual)
    key.chmod(0o644)
    with pytest.raises(LaunchError, match=f"chmod 600 {key}"):
        start_service(tls=mutual, admin_token="t" * 32)


def test_a_forging_connector_is_bounded_and_revocation_never_lowers_the_fence(
    secure_service: ServiceProcess, secure_admin: httpx.Client, tmp_path: Path
) -> None:
    real, rogue = unique("conn"), unique("rogue")
    real_id = _enroll(secure_service, real, tmp_path / "real")
    rogue_id = _enroll(secure_service, rogue, tmp_path / "rogue")
    epoch = next_epoch(secure_admin)
    with _client(secure_service, real_id) as a, _client(secure_service, rogue_id) as b:
        a.register(real, epoch)
        # A compromised but enrolled connector: an absurd epoch is refused as a
        # forgery (above the bound: 422; beyond the advance budget: 403), named.
        for absurd, status in ((4611686018427387904, 422), (epoch + 1_000_000, 403)):
            with pytest.raises(BadRequest) as refused:
                b.register(rogue, absurd)
            assert refused.value.status == status
        assert a.heartbeat(real, epoch, "healthy", {}) == "active"
        assert next_epoch(secure_admin) == epoch + 1
        # Within the budget it can depose the leader, once...
        b.register(rogue, epoch + 5)
        with pytest.raises(StaleEpochError):
            a.heartbeat(real, epoch, "healthy", {})
        revoked = secure_admin.post(f"/api/v1/admin/connectors/{rogue}/revoke", json={})
        assert revoked.status_code == 200
        # ...and revoking it never lowers the highest epoch: a deposed epoch stays deposed.
        assert next_epoch(secure_admin) == epoch + 6
        with pytest.raises(StaleEpochError):
            a.heartbeat(real, epoch, "healthy", {})
        a.register(real, epoch + 6)  # the cluster's next leadership above the forger's
    assert next_epoch(secure_admin) == epoch + 7
    metrics = secure_admin.get("/metrics").text
    assert 'pfxha_service_forged_epoch_refusals_total{kind="bound"} 1.0' in metrics
    assert 'pfxha_service_forged_epoch_refusals_total{kind="jump"} 1.0' in metrics
    log = (secure_service.directory / "service.log").read_text()
    assert f"[5113 epoch_forgery_refused] name={rogue}" in log
