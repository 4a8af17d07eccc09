"""``pfxha connector run``: configuration errors name the setting, --check validates."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

from connector.cli import root
from tests.fixtures.config_files import to_toml, with_placeholder_files

CONFIG = """
[connector]
name = "c1"
cluster = "lab"

[zookeeper]
hosts = "127.0.0.1:2181"

[service]
url = "http://127.0.0.1:8080"

[[ca]]
name = "primary"
url = "http://127.0.0.1:8888"
auth_key_file = "/etc/pfxha/k"
certificate = "/etc/pfxha/c.pem"
root = "/etc/pfxha/r.pem"
CERTDB

[templates]
user-auth = ["primary"]
"""
RECONCILE_OFF = 'reconcile = "off"'


def config(tmp_path: Path, certdb: str | None = None) -> Path:
    """A config file; by default its CA's certdb DSN and a 0600 password file."""
    if certdb is None:
        secret = tmp_path / "certdb.password"
        secret.write_text("s3cret\n")
        secret.chmod(0o600)
        certdb = (
            'certdb_dsn = "postgresql://pfxha_reader@127.0.0.1:5432/certdb_primary"\n'
            f'certdb_password_file = "{secret}"'
        )
    raw = with_placeholder_files(
        tomllib.loads(CONFIG.replace("CERTDB", certdb)), tmp_path / "files"
    )
    path = tmp_path / "c.toml"
    path.write_text(to_toml(raw))
    return path


def check(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        root, ["connector", "run", "--config", str(path), "--check", *extra]
    )
    return result.exit_code, result.output


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    code, output = check(config(tmp_path))
    assert code == 0, output
    assert "ok" in output
    # It says where reconciliation reads, without any password.
    assert "ca[primary]: certdb postgresql://pfxha_reader@127.0.0.1:5432/certdb_primary" in output
    assert "s3cret" not in output


def test_check_rejects_a_cfssl_ca_without_a_certdb(tmp_path: Path) -> None:
    code, output = check(config(tmp_path, certdb=""))
    assert code == 1
    assert "ca[primary].certdb_dsn: is required" in output
    assert 'reconcile = "off"' in output


def test_check_accepts_reconcile_off_and_says_so(tmp_path: Path) -> None:
    code, output = check(config(tmp_path, certdb=RECONCILE_OFF))
    assert code == 0, output
    assert "ok" in output
    assert "ca[primary]: reconcile = off" in output


def test_check_refuses_a_password_in_the_dsn(tmp_path: Path) -> None:
    dsn = 'certdb_dsn = "postgresql://pfxha_reader:pw@h:5432/db"\ncertdb_password_file = "/x"'
    code, output = check(config(tmp_path, certdb=dsn))
    assert code == 1
    assert "ca[primary].certdb_dsn: must not carry a password" in output


def test_check_refuses_a_readable_or_missing_certdb_password_file(tmp_path: Path) -> None:
    path = config(tmp_path)
    (tmp_path / "certdb.password").chmod(0o644)
    code, output = check(path)
    assert code == 1
    assert "ca[primary].certdb_password_file" in output
    assert "chmod 600" in output
    (tmp_path / "certdb.password").unlink()
    code, output = check(path)
    assert code == 1
    assert "does not exist" in output


def test_check_online_reports_a_certdb_that_does_not_answer(tmp_path: Path) -> None:
    secret = tmp_path / "certdb.password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    # Port 1 on loopback: nothing listens, the refusal is immediate.
    dsn = (
        'certdb_dsn = "postgresql://pfxha_reader@127.0.0.1:1/certdb_primary"\n'
        f'certdb_password_file = "{secret}"'
    )
    code, output = check(config(tmp_path, certdb=dsn), "--online")
    assert code == 1
    assert "ca[primary].certdb_dsn: certdb postgresql://pfxha_reader@127.0.0.1:1/" in output
    assert "unreachable" in output


def test_bad_setting_is_named_and_nothing_starts(tmp_path: Path) -> None:
    path = config(tmp_path)
    result = CliRunner().invoke(
        root,
        ["connector", "run", "--config", str(path)],
        env={"PFXHA_ZOOKEEPER_SESSION_TIMEOUT": "90"},
    )
    assert result.exit_code == 1
    assert "zookeeper.session_timeout" in result.output


def test_a_missing_ca_certificate_is_named_by_check_and_by_run(tmp_path: Path) -> None:
    path = config(tmp_path, certdb=RECONCILE_OFF)
    (tmp_path / "files" / "etc" / "pfxha" / "c.pem").unlink()
    for extra in (["--check"], []):
        result = CliRunner().invoke(root, ["connector", "run", "--config", str(path), *extra])
        assert result.exit_code == 1, result.output
        assert "ca[primary].certificate: " in result.output
        assert "c.pem: no such file" in result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, FileNotFoundError)


def test_check_lists_every_file_problem(tmp_path: Path) -> None:
    path = config(tmp_path, certdb=RECONCILE_OFF)
    files = tmp_path / "files" / "etc" / "pfxha"
    (files / "k").chmod(0o644)
    (files / "r.pem").write_text("not a certificate\n")
    result = CliRunner().invoke(root, ["connector", "run", "--config", str(path), "--check"])
    assert result.exit_code == 1
    assert "2 problems" in result.output
    assert "ca[primary].auth_key_file: " in result.output
    assert "chmod 600" in result.output
    assert "ca[primary].root: " in result.output
