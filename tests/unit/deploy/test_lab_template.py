"""The hosts lab's connector config: deploy/systemd/connector.toml, documented changes only."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from chaos.launch.deployed import (
    ADDED,
    CONNECTOR_TEMPLATE,
    SUBSTITUTED,
    LabConnector,
    TemplatePlan,
    plan_for,
    render_from_template,
)
from chaos.launch.unit import CONNECTOR_UNIT, SystemdUnit, moved


def flatten(config: dict[str, Any]) -> dict[tuple[str, str, str], Any]:
    """{(table kind, table, key): value}; a [[ca]] is the table ``ca:<name>``."""
    out: dict[tuple[str, str, str], Any] = {}
    for table, body in config.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            name = f"{table}:{row['name']}" if isinstance(body, list) else table
            for key, value in row.items():
                out[(table, name, key)] = value
    return out


def changes(template: str, generated: str, prefixes: dict[str, str]) -> set[tuple[str, str]]:
    """(table kind, key) of every value changed or added, a moved path not counting."""
    before, after = flatten(tomllib.loads(template)), flatten(tomllib.loads(generated))
    dropped = {w for w in set(before) - set(after) if (w[0], "*") not in SUBSTITUTED}
    assert not dropped, f"settings dropped: {dropped}"
    found = set()
    for where, value in after.items():
        kind, _, key = where
        old = before.get(where)
        if old == value or (isinstance(old, str) and moved(old, prefixes) == value):
            continue
        found.add((kind, "*" if kind in ("templates", "loop") else key))
    return found


def lab_connector(tmp_path: Path) -> LabConnector:
    ca = {"certdb_dsn": "postgresql://pfxha_reader@198.18.0.5:5432/certdb_primary"}
    return LabConnector(
        name="c1",
        cluster="lab",
        zk_hosts="198.18.0.2:2181,198.18.0.3:2181,198.18.0.4:2181",
        session_timeout=1.0,
        service_url="https://198.18.0.6:8443",
        service_ca=tmp_path / "service-ca.pem",
        templates={"user-auth": ["primary"], "smime": ["primary", "secondary"]},
        cas={
            "primary": {**ca, "url": "https://198.18.0.5:8888", "crl_url": "http://x/p.crl"},
            "secondary": {**ca, "url": "https://198.18.0.5:8889"},
        },
        zk_password_file=tmp_path / "zk",
        loop={"yield_after_s": 2.0},
    )


def test_the_lab_plan_changes_only_what_is_documented(tmp_path: Path) -> None:
    template = CONNECTOR_TEMPLATE.read_text()
    plan = plan_for(lab_connector(tmp_path), tmp_path / "c1")
    assert plan.undocumented() == []
    generated = render_from_template(template, plan)
    assert changes(template, generated, dict(plan.prefixes)) <= SUBSTITUTED | ADDED
    config = tomllib.loads(generated)
    assert config["connector"]["name"] == "c1"
    assert config["zookeeper"]["auth_user"] == "c1"
    assert config["zookeeper"]["auth_password_file"] == str(tmp_path / "c1/credentials/zk-password")
    assert config["service"]["identity_dir"] == str(tmp_path / "c1/state/identity")
    assert config["ca"][0]["crl_url"] == "http://x/p.crl"
    assert "crl_url" not in config["ca"][1]
    assert config["templates"] == {"user-auth": ["primary"], "smime": ["primary", "secondary"]}
    assert config["loop"] == {"yield_after_s": 2.0}
    # Every comment of the template is still there, in order.
    comments = [line for line in template.splitlines() if line.lstrip().startswith("#")]
    assert [line for line in generated.splitlines() if line.lstrip().startswith("#")] == comments


def test_a_change_outside_the_documented_ones_is_named() -> None:
    plan = TemplatePlan(
        values={("zookeeper", "liveness_port"): 1, ("ca:primary", "timeout_s"): 9.0},
        additions={"metrics": {"extra": 1}},
    )
    assert plan.undocumented() == [
        "zookeeper.liveness_port",
        "ca:primary.timeout_s",
        "metrics.extra",
    ]


def test_the_unit_gives_the_lab_its_command_line_and_credentials() -> None:
    unit = SystemdUnit.read(CONNECTOR_UNIT)
    prefixes = {"/etc/pfxha": "/lab/c1/etc"}
    argv = unit.command(unit.exec_start, prefixes, "/venv/bin/pfxha")
    assert argv == ["/venv/bin/pfxha", "connector", "run", "--config", "/lab/c1/etc/connector.toml"]
    assert unit.command(unit.exec_start_pre, prefixes, "/venv/bin/pfxha")[-1] == "--check"
    assert unit.environment == {"PYTHONUNBUFFERED": "1"}
    # Every secret the template reads from the credentials directory, the unit loads.
    template = tomllib.loads(CONNECTOR_TEMPLATE.read_text())
    named = {
        value.rsplit("/", 1)[-1]
        for (_, _, _), value in flatten(template).items()
        if isinstance(value, str) and value.startswith("/run/credentials/pfxha-connector.service/")
    }
    assert named == set(unit.credentials)


@pytest.mark.parametrize("line", ["ExecStart=/usr/bin/python3 -m x", "Type=exec"])
def test_a_unit_that_does_not_run_pfxha_is_refused(line: str) -> None:
    from chaos.launch._process import LaunchError

    def command() -> list[str]:
        unit = SystemdUnit.parse(f"[Service]\n{line}\n")
        return unit.command(unit.exec_start, {}, "/venv/bin/pfxha")

    with pytest.raises(LaunchError):
        command()
