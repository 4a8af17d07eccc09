"""`pfxha lab up|status|down` on real servers; failures leave nothing running."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chaos.lab.lab import Lab
from chaos.lab.state import alive, read_state
from chaos.lab.supervisor import control
from chaos.launch._process import LaunchError

pytestmark = pytest.mark.timeout(240)

_PFXHA = [sys.executable, "-c", "from connector.cli import main; main()"]


def _pfxha(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_PFXHA, *args], capture_output=True, text=True, timeout=200, env=env)


def _ours_running(marker: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(marker) in line and "ps -eo" not in line]


def test_up_status_down_and_double_start(tmp_path: Path) -> None:
    run_dir = tmp_path / "lab"
    started = _pfxha("lab", "up", "--connectors", "2", "--links", "--dir", str(run_dir))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = read_state(run_dir)
        assert state is not None
        assert state.status == "up"
        names = {p.name for p in state.processes}
        assert {"zk1", "zk2", "zk3", "service", "c1", "c2", "cfssl-primary"} <= names
        assert all(alive(p.pid) for p in state.processes)
        # --links: each connector's fault proxies live in the supervisor while the lab runs,
        # and the connector's config names them.
        endpoints = json.loads((run_dir / "endpoints.json").read_text())
        c1 = endpoints["links"]["c1"]
        assert set(c1) == {"service", "ca:primary", "ca:primary:certdb", "ca:secondary",
                           "ca:secondary:certdb"}  # fmt: skip
        config = (run_dir / "connectors" / "c1" / "connector.toml").read_text()
        assert f"127.0.0.1:{c1['service']}" in config

        trust = ssl.create_default_context(cafile=endpoints["service_ca"])

        def through() -> int:
            url = f"https://127.0.0.1:{c1['service']}/healthz"
            return httpx.get(url, verify=trust, timeout=5).status_code

        assert through() == 200
        # A link cut and its heal through the supervisor's control socket.
        cut = control(run_dir, {"op": "cut-link", "name": "c1", "mode": "reset"})
        assert cut == {"ok": True, "name": "c1", "links": ["service"]}
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            through()
        assert control(run_dir, {"op": "heal"})["ok"] is True
        assert through() == 200

        again = _pfxha("lab", "up", "--dir", str(run_dir))
        assert again.returncode != 0
        assert "already running" in again.stderr

        shown = _pfxha("lab", "status", "--dir", str(run_dir))
        assert shown.returncode == 0, shown.stderr
        assert "leader (ZooKeeper)" in shown.stdout
        assert "nobody" not in shown.stdout
        assert (
            json.loads(_pfxha("lab", "status", "--json", "--dir", str(run_dir)).stdout)["status"]
            == "up"
        )
    finally:
        stopped = _pfxha("lab", "down", "--dir", str(run_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert _ours_running(run_dir) == []
    final = read_state(run_dir)
    assert final is not None
    assert final.status == "down"
    assert (run_dir / "service" / "service.log").stat().st_size > 0  # logs kept


def test_missing_package_is_named_and_nothing_starts(tmp_path: Path) -> None:
    run_dir = tmp_path / "lab"
    env = dict(os.environ, PATH="/nonexistent")
    result = _pfxha("lab", "up", "--dir", str(run_dir), env=env)
    assert result.returncode != 0
    assert "golang-cfssl" in result.stderr
    assert _ours_running(run_dir) == []


def test_failure_half_way_stops_what_already_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_connectors(self: Lab) -> None:
        raise LaunchError("connector port 1234 already in use")

    monkeypatch.setattr(Lab, "_start_connectors", broken_connectors)
    lab = Lab(tmp_path / "lab", connectors=1)
    with pytest.raises(LaunchError, match="already in use"):
        lab.start()
    assert _ours_running(tmp_path / "lab") == []
    assert lab.processes() == []
