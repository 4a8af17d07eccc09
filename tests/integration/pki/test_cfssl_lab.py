"""The CFSSL lab launcher: provisioning, serving, faults, CDP."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from chaos.launch import port_open
from chaos.launch.cfssl import CfsslLab


def _info(lab: CfsslLab, name: str, timeout: float = 5.0) -> httpx.Response:
    """``/info`` of CA ``name`` as the lab's own client (every CA is mutual TLS)."""
    with lab.http(timeout=timeout) as http:
        return http.post(f"{lab.url(name)}/api/v1/cfssl/info", json={})


def test_issuing_cas_chain_to_the_root_and_serve(cfssl_cas: CfsslLab) -> None:
    root = cfssl_cas.root_certificate
    for name in cfssl_cas.names:
        ca = cfssl_cas.ca_certificate(name)
        ca.verify_directly_issued_by(root)
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca
        assert constraints.path_length == 0
        info = _info(cfssl_cas, name).json()
        assert x509.load_pem_x509_certificate(info["result"]["certificate"].encode()) == ca


def test_certdb_schema_exists_and_secrets_are_private(cfssl_cas: CfsslLab) -> None:
    for name in cfssl_cas.names:
        access = cfssl_cas.certdb_access(name)
        with cfssl_cas.certdb_server.admin(access.database) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {row[0] for row in rows}
        assert {"certificates", "ocsp_responses"} <= tables
        for secret in (
            cfssl_cas.ca_key_path(name),
            cfssl_cas.run_dir / name / "config.json",
            cfssl_cas.run_dir / name / "db.json",  # the writer's password
            access.reader_password_file,
            access.writer_password_file,
        ):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((cfssl_cas.run_dir / "state.json").stat().st_mode) == 0o600


def test_pids_name_every_process_of_the_lab(cfssl_cas: CfsslLab) -> None:
    pids = cfssl_cas.pids()
    assert set(pids) == {"cfssl-primary", "cfssl-secondary", "crl-server", "postgres"}
    assert pids["cfssl-primary"] == cfssl_cas.pid("primary")


def test_kill_then_start_comes_back_on_the_same_port(cfssl_cas: CfsslLab) -> None:
    url = cfssl_cas.url("secondary")
    port = int(url.rsplit(":", 1)[1])
    cfssl_cas.kill("secondary")
    assert not cfssl_cas.running("secondary")
    assert not port_open("127.0.0.1", port)
    cfssl_cas.start("secondary")
    assert cfssl_cas.url("secondary") == url
    assert _info(cfssl_cas, "secondary").status_code == 200


def test_paused_ca_accepts_connections_but_does_not_answer(cfssl_cas: CfsslLab) -> None:
    cfssl_cas.pause("primary")
    with pytest.raises(httpx.TimeoutException):
        _info(cfssl_cas, "primary", timeout=0.5)
    cfssl_cas.resume("primary")
    assert _info(cfssl_cas, "primary").status_code == 200


def test_crl_is_served_signed_by_each_issuing_ca(cfssl_cas: CfsslLab) -> None:
    for name in cfssl_cas.names:
        reply = httpx.get(cfssl_cas.crl_url(name))
        assert reply.status_code == 200
        crl = x509.load_der_x509_crl(reply.content)
        assert crl.issuer == cfssl_cas.ca_certificate(name).subject
        assert crl.is_signature_valid(cfssl_cas.ca_certificate(name).public_key())


def test_provisioning_is_idempotent(cfssl_cas: CfsslLab) -> None:
    again = CfsslLab(cfssl_cas.run_dir, certdb_server=cfssl_cas.certdb_server)
    again.provision()
    assert again.describe() == cfssl_cas.describe()
    assert (
        Path(again.describe()["root"]).read_bytes() == cfssl_cas.root_certificate_path.read_bytes()
    )
