"""The certdb over the network: real CFSSL writes PostgreSQL, connectors read it as a reader.

CFSSL signs -> its row is in PostgreSQL -> the connector's CertDB finds it by
public key over TCP with the read-only role; that role cannot write; wrong
credentials and an unreachable server are clear, bounded errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from chaos.launch import free_port
from chaos.launch.cfssl import CfsslLab
from chaos.launch.postgres import PostgresServer
from connector.ca import (
    CARouter,
    CAUnavailableError,
    CertDBAuthError,
    CertDBError,
    CertDBUnavailableError,
    CfsslCA,
    PostgresCertDB,
)
from connector.cli import root
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key


def _issue(router: CARouter, ca: str) -> tuple[int, object]:
    profile = ProfileTemplate("p", "CN=alice,O=Contoso", [], KeyType.P256, "user-auth")
    key = generate_key(KeyType.P256)
    csr = csr_for_profile(key, profile, {"DeviceId": "dev-pg-1"})
    issued = router.cas[ca].issue(csr, "user-auth", "req-pg", timeout=10)
    return issued.serial, key


def _reader(lab: CfsslLab, ca: str) -> psycopg.Connection:
    access = lab.certdb_access(ca)
    return psycopg.connect(
        access.reader_dsn,
        password=access.reader_password_file.read_text().strip(),
        autocommit=True,
    )


def test_cfssl_signs_and_the_reader_finds_it_by_public_key(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    router = cfssl_router()
    serial, key = _issue(router, "primary")
    # The row CFSSL wrote, as its writer role stored it (bytea decimal serial).
    access = cfssl_cas.certdb_access("primary")
    with cfssl_cas.certdb_server.admin(access.database) as conn:
        row = conn.execute(
            "SELECT status, authority_key_identifier FROM certificates WHERE serial_number = %s",
            (str(serial).encode(),),
        ).fetchone()
    assert row is not None
    assert bytes(row[0]) == b"good"
    # The connector's path: a DSN without password, the password from a file, TCP.
    certdb = PostgresCertDB(access.reader_dsn, password_file=access.reader_password_file)
    assert access.reader_dsn.startswith("postgresql://pfxha_reader@127.0.0.1:")
    found = certdb.find_by_public_key(key.public_key())  # type: ignore[attr-defined]
    assert [r.serial for r in found] == [serial]
    assert found[0].status == "good"
    assert certdb.last_error is None
    assert certdb.last_ok is not None
    # And through the CA driver (what reconciliation calls), then revoked.
    ca = router.cas["primary"]
    assert [c.serial for c in ca.find(key.public_key())] == [serial]  # type: ignore[attr-defined]
    assert ca.reconcile_state().ready  # type: ignore[attr-defined]
    ca.revoke(serial, "superseded", timeout=10)
    record = certdb.by_serial(serial)
    assert record is not None
    assert record.revoked
    assert record.reason == 4
    assert record.revoked_at is not None
    assert serial in {r.serial for r in certdb.records(status="revoked")}
    # The secondary's database holds none of the primary's rows.
    secondary = cfssl_cas.certdb("secondary")
    assert secondary.by_serial(serial) is None


def test_the_read_only_role_cannot_write(cfssl_cas: CfsslLab) -> None:
    with _reader(cfssl_cas, "primary") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO certificates (serial_number, authority_key_identifier, status, pem)"
                " VALUES ('1', '', 'good', 'x')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE certificates SET status = 'revoked'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM certificates")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM ocsp_responses")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE mine (x int)")
        assert conn.execute("SELECT COUNT(*) FROM certificates").fetchone() is not None
    access = cfssl_cas.certdb_access("primary")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            f"postgresql://{access.reader}@{access.host}:{access.port}/postgres",
            password=access.reader_password_file.read_text().strip(),
        )


def test_a_ca_writer_cannot_reach_another_cas_certdb(cfssl_cas: CfsslLab) -> None:
    primary = cfssl_cas.certdb_access("primary")
    secondary = cfssl_cas.certdb_access("secondary")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            f"postgresql://{primary.writer}@{secondary.host}:{secondary.port}/{secondary.database}",
            password=primary.writer_password_file.read_text().strip(),
        )


def test_wrong_password_is_a_clear_auth_error(cfssl_cas: CfsslLab, tmp_path: Path) -> None:
    access = cfssl_cas.certdb_access("primary")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    certdb = PostgresCertDB(access.reader_dsn, password_file=wrong)
    with pytest.raises(CertDBAuthError, match="password authentication failed") as caught:
        certdb.ping()
    assert "not-the-password" not in str(caught.value)
    assert access.reader_dsn.split("//")[1].split(":")[0] in str(caught.value)  # where
    assert isinstance(certdb.last_error, CertDBAuthError)
    ca = CfsslCA.from_dict(
        {**cfssl_cas.describe()["cas"]["primary"], "certdb_password_file": str(wrong)}
    )
    state = ca.probe_certdb()
    assert not state.ready
    assert state.detail.startswith("auth: ")
    with pytest.raises(CAUnavailableError, match="password authentication failed"):
        ca.find(generate_key(KeyType.P256).public_key())
    ca.close()


def test_missing_password_file_is_an_auth_error(cfssl_cas: CfsslLab, tmp_path: Path) -> None:
    access = cfssl_cas.certdb_access("primary")
    certdb = PostgresCertDB(access.reader_dsn, password_file=tmp_path / "absent")
    with pytest.raises(CertDBAuthError, match="password file"):
        certdb.records()


def test_unreachable_certdb_fails_fast_and_says_so(cfssl_cas: CfsslLab) -> None:
    access = cfssl_cas.certdb_access("primary")
    closed = free_port("127.0.0.1")  # nothing listens there
    dsn = f"postgresql://{access.reader}@127.0.0.1:{closed}/{access.database}"
    certdb = PostgresCertDB(dsn, password_file=access.reader_password_file)
    started = time.monotonic()
    with pytest.raises(CertDBUnavailableError, match="unreachable"):
        certdb.find_by_public_key(generate_key(KeyType.P256).public_key())
    assert time.monotonic() - started < certdb.connect_timeout + 1


def test_a_dsn_with_a_password_is_refused() -> None:
    with pytest.raises(CertDBError, match="must not carry a password"):
        PostgresCertDB("postgresql://pfxha_reader:secret@127.0.0.1:5432/certdb_primary")


def test_a_killed_server_comes_back_on_its_port(tmp_path: Path) -> None:
    # Its own server (not the session's, which the CFSSL lab writes to), in a
    # pytest directory the postgres user cannot pass: the data goes outside.
    server = PostgresServer(tmp_path / "pg")
    try:
        server.start()
        assert server.home != server.run_dir
        access = server.create_certdb("restart-probe")
        assert access.database == "certdb_restart_probe"
        port = server.port
        server.kill()
        certdb = PostgresCertDB(access.reader_dsn, password_file=access.reader_password_file)
        with pytest.raises(CertDBUnavailableError):
            certdb.count()
        server.start()
        assert server.port == port
        assert certdb.count() == 0
        assert certdb.last_error is None
    finally:
        server.destroy()
    assert not server.home.exists()


def _connector_toml(lab: CfsslLab, path: Path, password_file: Path) -> Path:
    blocks = []
    key_file = path.parent / "ca-auth.key"  # the file check wants a hex CFSSL key, 0600
    key_file.write_text("00" * 32)
    key_file.chmod(0o600)
    for name in lab.names:
        spec = lab.describe()["cas"][name]
        blocks.append(
            f'[[ca]]\nname = "{name}"\nurl = "{spec["url"]}"\n'
            f'auth_key_file = "{key_file}"\ncertificate = "{spec["certificate"]}"\n'
            f'root = "{spec["root"]}"\ncertdb_dsn = "{spec["certdb_dsn"]}"\n'
            f'certdb_password_file = "{password_file}"\n'
        )
    path.write_text(
        '[connector]\nname = "c1"\ncluster = "t"\n[zookeeper]\nhosts = "127.0.0.1:1"\n'
        '[service]\nurl = "http://127.0.0.1:1"\n'
        + "\n".join(blocks)
        + '[templates]\nuser-auth = ["primary", "secondary"]\n'
    )
    return path


def test_check_online_asks_each_certdb(cfssl_cas: CfsslLab, tmp_path: Path) -> None:
    good = tmp_path / "reader.password"
    good.write_text(cfssl_cas.certdb_access("primary").reader_password_file.read_text())
    good.chmod(0o600)
    config = _connector_toml(cfssl_cas, tmp_path / "c.toml", good)
    argv = ["connector", "run", "--config", str(config), "--check", "--online"]
    result = CliRunner().invoke(root, argv)
    assert result.exit_code == 0, result.output
    for name in cfssl_cas.names:
        assert f"ca[{name}]: certdb postgresql://pfxha_reader@127.0.0.1:" in result.output
    assert result.output.count(" answers") == 2
    good.write_text("wrong\n")
    result = CliRunner().invoke(root, argv)
    assert result.exit_code == 1
    assert "ca[primary].certdb_dsn:" in result.output
    assert "password authentication failed" in result.output
