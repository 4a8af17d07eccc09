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

[templates]
user-auth = ["primary"]
"""


def write(tmp_path: Path) -> Path:
    raw = with_placeholder_files(tomllib.loads(CONFIG), tmp_path / "files")
    path = tmp_path / "c.toml"
    path.write_text(to_toml(raw))
    return path


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path)
    result = CliRunner().invoke(root, ["connector", "run", "--config", str(path), "--check"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_bad_setting_is_named_and_nothing_starts(tmp_path: Path) -> None:
    path = write(tmp_path)
    result = CliRunner().invoke(
        root,
        ["connector", "run", "--config", str(path)],
        env={"PFXHA_ZOOKEEPER_SESSION_TIMEOUT": "90"},
    )
    assert result.exit_code == 1
    assert "zookeeper.session_timeout" in result.output


def test_a_missing_ca_certificate_is_named_by_check_and_by_run(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "files" / "etc" / "pfxha" / "c.pem").unlink()
    for extra in (["--check"], []):
        result = CliRunner().invoke(root, ["connector", "run", "--config", str(path), *extra])
        assert result.exit_code == 1, result.output
        assert "ca[primary].certificate: " in result.output
        assert "c.pem: no such file" in result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, FileNotFoundError)


def test_check_lists_every_file_problem(tmp_path: Path) -> None:
    path = write(tmp_path)
    files = tmp_path / "files" / "etc" / "pfxha"
    (files / "k").chmod(0o644)
    (files / "r.pem").write_text("not a certificate\n")
    result = CliRunner().invoke(root, ["connector", "run", "--config", str(path), "--check"])
    assert result.exit_code == 1
    assert "2 problems" in result.output
    assert "ca[primary].auth_key_file: " in result.output
    assert "chmod 600" in result.output
    assert "ca[primary].root: " in result.output
