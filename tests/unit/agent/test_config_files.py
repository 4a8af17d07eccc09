"""connector.config_files: what would fail at run time fails the check, naming the setting."""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from connector.config import ConfigError, ConnectorConfig, parse_config
from connector.config_files import check_files, file_problems
from tests.fixtures.config_files import with_placeholder_files, write_identity
from tests.unit.pki._ca import make_root

CONFIG = """
[connector]
name = "c1"
cluster = "lab"

[zookeeper]
hosts = "127.0.0.1:2181"
auth_user = "connector"
auth_password_file = "/creds/zk-password"

[service]
url = "https://svc:8443"
ca_file = "/etc/pfxha/service-ca.pem"
identity_dir = "/var/lib/pfxha/identity"

[[ca]]
name = "primary"
url = "https://ca1:8888"
auth_key_file = "/creds/ca1.key"
certificate = "/etc/pfxha/ca1.pem"
root = "/etc/pfxha/root.pem"
ca_file = "/etc/pfxha/ca-tls.pem"
certdb = "/var/lib/cfssl/ca1.db"

[templates]
user-auth = ["primary"]
"""


def load(tmp_path: Path) -> ConnectorConfig:
    return parse_config(with_placeholder_files(tomllib.loads(CONFIG), tmp_path), {})


def test_a_complete_set_of_files_passes(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert file_problems(config) == []
    check_files(config)


def _unlink(path: Path) -> None:
    path.unlink()


def _garbage(path: Path) -> None:
    path.write_text("garbage\n")


def _loose(path: Path) -> None:
    path.chmod(0o640)


def _empty(path: Path) -> None:
    path.write_text("\n")


def _other_root(path: Path) -> None:
    path.write_bytes(make_root("Another Root").certificate.public_bytes(Encoding.PEM))


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("file", "damage", "setting", "words"),
    [
        ("creds/zk-password", _unlink, "zookeeper.auth_password_file", "no such file"),
        ("creds/zk-password", _loose, "zookeeper.auth_password_file", "chmod 600"),
        ("creds/zk-password", _empty, "zookeeper.auth_password_file", "is empty"),
        ("etc/pfxha/service-ca.pem", _garbage, "service.ca_file", "not a PEM certificate"),
        ("etc/pfxha/service-ca.pem", _directory, "service.ca_file", "is a directory"),
        ("creds/ca1.key", _unlink, "ca[primary].auth_key_file", "no such file"),
        ("creds/ca1.key", _loose, "ca[primary].auth_key_file", "mode 0o640"),
        ("creds/ca1.key", _garbage, "ca[primary].auth_key_file", "hex"),
        ("etc/pfxha/ca1.pem", _unlink, "ca[primary].certificate", "ca1.pem: no such file"),
        ("etc/pfxha/ca1.pem", _garbage, "ca[primary].certificate", "not a PEM certificate"),
        ("etc/pfxha/root.pem", _unlink, "ca[primary].root", "no such file"),
        ("etc/pfxha/root.pem", _other_root, "ca[primary].root", "does not verify"),
        ("etc/pfxha/ca-tls.pem", _garbage, "ca[primary].ca_file", "not a PEM certificate"),
        ("var/lib/cfssl/ca1.db", _unlink, "ca[primary].certdb", "no such file"),
        ("var/lib/pfxha/identity/key.pem", _unlink, "service.identity_dir", "no such file"),
        ("var/lib/pfxha/identity/key.pem", _loose, "service.identity_dir", "chmod 600"),
        ("var/lib/pfxha/identity/key.pem", _garbage, "service.identity_dir", "private key"),
        ("var/lib/pfxha/identity/cert.pem", _garbage, "service.identity_dir", "PEM certificate"),
    ],
)
def test_each_file_problem_names_its_setting(
    tmp_path: Path, file: str, damage: Callable[[Path], None], setting: str, words: str
) -> None:
    config = load(tmp_path)
    damage(tmp_path / file)
    problems = file_problems(config)
    assert [p.setting for p in problems] == [setting], problems
    assert words in str(problems[0])
    assert str(problems[0]).startswith(f"{setting}: ")


def test_missing_identity_directory_says_to_enroll(tmp_path: Path) -> None:
    config = load(tmp_path)
    for name in ("key.pem", "cert.pem", "connector-ca.pem"):
        (tmp_path / "var/lib/pfxha/identity" / name).unlink()
    (tmp_path / "var/lib/pfxha/identity").rmdir()
    (problem,) = file_problems(config)
    assert problem.setting == "service.identity_dir"
    assert "pfxha connector enroll --out" in str(problem)


def test_identity_certificate_of_another_key_or_expired(tmp_path: Path) -> None:
    config = load(tmp_path)
    identity = tmp_path / "var/lib/pfxha/identity"
    other = tmp_path / "other"
    write_identity(other, make_root())
    os.replace(other / "cert.pem", identity / "cert.pem")
    (problem,) = file_problems(config)
    assert "is not the certificate of" in str(problem)

    write_identity(identity, make_root(), not_after=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    (problem,) = file_problems(config, now=later)
    assert problem.setting == "service.identity_dir"
    assert "expired" in str(problem)
    assert "enroll again" in str(problem)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: run as a user")
def test_identity_directory_the_connector_cannot_write(tmp_path: Path) -> None:
    config = load(tmp_path)
    identity = tmp_path / "var/lib/pfxha/identity"
    identity.chmod(0o500)
    try:
        (problem,) = file_problems(config)
    finally:
        identity.chmod(0o700)
    assert "not writable" in str(problem)


def test_a_certdb_url_is_not_a_file(tmp_path: Path) -> None:
    raw = with_placeholder_files(tomllib.loads(CONFIG), tmp_path)
    raw["ca"][0]["certdb"] = "postgresql://reader@db/certdb"
    assert file_problems(parse_config(raw, {})) == []


def test_check_files_raises_the_first_problem(tmp_path: Path) -> None:
    config = load(tmp_path)
    (tmp_path / "creds/zk-password").unlink()
    (tmp_path / "etc/pfxha/ca1.pem").unlink()
    with pytest.raises(ConfigError, match=r"^zookeeper\.auth_password_file: "):
        check_files(config)
    assert len(file_problems(config)) == 2
