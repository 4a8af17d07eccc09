"""``pfxha connector run``: configuration errors name the setting, --check validates."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from connector.cli import root

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
auth_key_file = "/tmp/k"
certificate = "/tmp/c.pem"
root = "/tmp/r.pem"

[templates]
user-auth = ["primary"]
"""


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    result = CliRunner().invoke(root, ["connector", "run", "--config", str(path), "--check"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_bad_setting_is_named_and_nothing_starts(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    result = CliRunner().invoke(
        root,
        ["connector", "run", "--config", str(path)],
        env={"PFXHA_ZOOKEEPER_SESSION_TIMEOUT": "90"},
    )
    assert result.exit_code == 1
    assert "zookeeper.session_timeout" in result.output
