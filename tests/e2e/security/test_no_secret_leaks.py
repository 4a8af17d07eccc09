"""A secure lab (HTTPS service, enrolled connectors, ZooKeeper ACLs, CFSSL auth keys)
issues certificates; then every file under its run directory, every log and the
command line of every process it started is searched for the secrets in play.

Secrets: the admin token, the ZooKeeper password, the CFSSL sign keys, every
enrollment token handed out, and private keys (PEM "PRIVATE KEY" blocks). A
secret may live only in a file that is mode 0600; never in a log, never in a
command line; an enrollment token nowhere at all (only its SHA-256).
"""

from __future__ import annotations

import stat
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
from kazoo.exceptions import NoAuthError

from chaos.intruder import intrude
from chaos.lab.lab import Lab
from chaos.launch._process import wait_for
from chaos.launch.service import ServiceProcess
from election import open_client

pytestmark = pytest.mark.timeout(180)


def _issued(client: httpx.Client) -> int:
    rows = client.get("/api/v1/read/requests").json()
    return sum(1 for r in rows if r["state"] in ("issued", "delivered", "installed"))


def test_secure_lab_leaks_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens: list[str] = []
    original = ServiceProcess.enrollment_token

    def recording(self: ServiceProcess, name: str, ttl_s: int = 600) -> str:
        token = original(self, name, ttl_s)
        tokens.append(token)
        return token

    monkeypatch.setattr(ServiceProcess, "enrollment_token", recording)
    lab = Lab(tmp_path / "lab", connectors=2)
    with lab:
        assert lab.service is not None
        assert lab.service.url.startswith("https://")
        with lab.service.admin_client() as admin:
            wait_for(lambda: _issued(admin) >= 2, timeout=60, what="certificates issued")
        # Each connector exports its certificate's expiry (the renewal thread sets it).
        assert lab.fleet is not None
        for url in (lab.fleet.metrics_url(name) for name in lab.fleet.names):
            wait_for(
                partial(_expires_after, url, time.time() + 86_400),
                timeout=20,
                what=f"{url} exporting its certificate expiry",
            )
        # The drill's intruder: every attack refused, the leader undisturbed.
        leader = lab.fleet.wait_for_leader() if lab.fleet else ""
        report = intrude(lab, leader)
        assert report["refused"] == report["attempts"] >= 12
        with lab.service.admin_client() as admin:
            counted = admin.get("/metrics").text
        no_cert = 'pfxha_service_auth_refusals_total{api="connector",reason="no_certificate"} 4.0'
        assert no_cert in counted
        assert 'pfxha_service_revoked_connector_calls_total{endpoint="register"} 1.0' in counted
        # Without credentials, ZooKeeper lets nobody change the election.
        with open_client(lab.zk.hosts) as anonymous:
            with pytest.raises(NoAuthError):
                anonymous.delete(f"/pfxha/{lab.cluster}/leader")
            with pytest.raises(NoAuthError):
                anonymous.create(f"/pfxha/{lab.cluster}/election/m-rogue-p9-", sequence=True)
        pids = [record.pid for record in lab.processes()]
        cmdlines = [_read(Path(f"/proc/{pid}/cmdline")) for pid in pids]
        # two connectors; the intruder's revoked one, its forger and its revoked leader
        assert len(tokens) == 5
        assert lab.zk_auth is not None
        admin_token = lab.service.admin_token
        assert admin_token is not None
        secrets = {
            "admin token": admin_token,
            "zookeeper admin password": lab.zk_auth[1],
            **{
                f"zookeeper password of {name}": lab.zk_member_auth(name)[1].read_text().strip()
                for name in lab.connector_names()
            },
            **{f"enrollment token {i}": t for i, t in enumerate(tokens)},
            **{
                f"cfssl key {name}": str(spec["auth_key"])
                for name, spec in lab.cas.describe()["cas"].items()
            },
        }
    leaks: list[str] = []
    for pid, cmdline in zip(pids, cmdlines, strict=True):
        leaks += [
            f"{what} in the command line of pid {pid}"
            for what, v in secrets.items()
            if v in cmdline
        ]
        if "PRIVATE KEY" in cmdline:
            leaks.append(f"a private key in the command line of pid {pid}")
    files = [p for p in (tmp_path / "lab").rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".log" for p in files)
    seen: set[str] = set()
    for path in files:
        text = _read(path)
        private = stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
        found = [what for what, value in secrets.items() if value in text]
        if "PRIVATE KEY" in text:
            found.append("a private key")
        seen.update(found)
        for what in found:
            if what.startswith("enrollment token"):
                leaks.append(f"{what} stored in {path}")
            elif path.suffix == ".log" or "log" in path.name or not private:
                leaks.append(f"{what} in {path} (mode {oct(path.stat().st_mode & 0o777)})")
    assert leaks == []
    # The search is not vacuous: the secrets that must be on disk were found (in 0600 files).
    assert {"admin token", "zookeeper admin password", "a private key"} <= seen
    assert any(what.startswith("zookeeper password of") for what in seen)
    assert any(what.startswith("cfssl key") for what in seen)


def _expires_after(metrics_url: str, deadline: float) -> bool:
    for line in httpx.get(metrics_url + "/metrics", timeout=2).text.splitlines():
        if line.startswith("pfxha_connector_certificate_expiry_timestamp_seconds"):
            return float(line.split()[-1]) > deadline
    return False


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""
