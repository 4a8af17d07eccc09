"""Command-line tools take secrets from 0600 files or the environment, never argv."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from connector.cli import root as main


def test_switchover_refuses_an_auth_file_others_may_read(tmp_path: Path) -> None:
    auth = tmp_path / "zk-auth"
    auth.write_text("connector:pw\n")
    auth.chmod(0o644)
    args = ["switchover", "--hosts", "127.0.0.1:1", "--cluster", "x", "--auth-file", str(auth)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "chmod 600" in result.output


def test_enroll_refuses_a_token_file_others_may_read_and_a_missing_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 43)
    token.chmod(0o640)
    base = ["connector", "enroll", "--service", "https://127.0.0.1:1"]
    base += ["--out", str(tmp_path / "id")]
    loose = CliRunner().invoke(main, [*base, "--token-file", str(token)])
    assert loose.exit_code != 0
    assert "chmod 600" in loose.output
    missing = CliRunner().invoke(main, base, env={"PFXHA_ENROLL_TOKEN": ""})
    assert missing.exit_code != 0
    assert "PFXHA_ENROLL_TOKEN" in missing.output
    assert not (tmp_path / "id").exists()


def test_connector_refuses_to_start_with_a_readable_ca_key(tmp_path: Path) -> None:
    key = tmp_path / "ca.key"
    key.write_text("00" * 16)
    key.chmod(0o644)
    config = tmp_path / "connector.toml"
    config.write_text(
        '[connector]\nname = "c1"\ncluster = "t"\n'
        '[zookeeper]\nhosts = "127.0.0.1:1"\n'
        '[service]\nurl = "https://127.0.0.1:1"\n'
        f'[[ca]]\nname = "a"\nurl = "http://127.0.0.1:1"\nauth_key_file = "{key}"\n'
        f'certificate = "{key}"\nroot = "{key}"\nreconcile = "off"\n'
        '[templates]\nuser-auth = ["a"]\n'
        '[metrics]\nlisten = "127.0.0.1:0"\n'
    )
    result = CliRunner().invoke(main, ["connector", "run", "--config", str(config)])
    assert result.exit_code != 0
    assert f"chmod 600 {key}" in result.output
