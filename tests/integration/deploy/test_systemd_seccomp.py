"""The connector under the system-call filter of deploy/systemd/pfxha-connector.service.

No systemd runs here as PID 1, so ``scripts/unit_seccomp.py`` (run by the
system python3, which has Debian's ``python3-seccomp``) loads the filter the
unit's ``SystemCallFilter=``, ``SystemCallErrorNumber=`` and
``RestrictAddressFamilies=`` lines describe, and execs the connector. The
connector then does its whole job against real servers: mutual TLS enrollment
identity, ZooKeeper, the key pool, CFSSL, the HTTPS service, until a
certificate is issued, and stops on SIGTERM. The same run under the unit's
old filter (``~@privileged @resources`` without an errno) dies of SIGSYS at
the key pool's ``setpriority``: the test sees the bug it guards against.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.bench._tenant import Tenant
from chaos.launch._process import ManagedProcess, wait_for
from chaos.launch.cfssl import CfsslLab
from chaos.launch.connector import ConnectorFleet
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from connector.identity import enroll
from election import open_client, read_cluster_status
from tests.fixtures.service import unique

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "deploy" / "systemd" / "pfxha-connector.service"
LAUNCHER = ROOT / "scripts" / "unit_seccomp.py"
SYSTEM_PYTHON = "/usr/bin/python3"
ENTRY = "from connector.cli import main; main()"

# The filter lines the unit had before this fix (issue 19 item 5).
OLD_FILTER = "SystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\n"


def _seccomp_available() -> bool:
    if shutil.which("systemd-analyze") is None or not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, check=False
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _seccomp_available(),
    reason="needs systemd-analyze and the system python3 with seccomp (Debian systemd, "
    "python3-seccomp; scripts/bootstrap.sh installs them)",
)


def old_unit(tmp_path: Path) -> Path:
    text = UNIT.read_text()
    lines = [
        line
        for line in text.splitlines(keepends=True)
        if not line.startswith(("SystemCallFilter=", "SystemCallErrorNumber="))
    ]
    at = next(i for i, line in enumerate(lines) if line.startswith("SystemCallArchitectures="))
    lines.insert(at + 1, OLD_FILTER)
    path = tmp_path / "old-pfxha-connector.service"
    path.write_text("".join(lines))
    return path


@pytest.fixture
def connector_config(
    tmp_path: Path,
    zk_single: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    secure_service: ServiceProcess,
) -> tuple[Path, str]:
    """One connector's config (enrolled, mutual TLS to the service) and its cluster."""
    assert secure_service.tls is not None
    server_ca = secure_service.tls.server_ca
    cluster = unique("seccomp")

    def do_enroll(name: str, out: Path) -> None:
        enroll(
            secure_service.url, secure_service.enrollment_token(name), out, verify=str(server_ca)
        )

    fleet = ConnectorFleet(
        tmp_path / "connectors",
        count=1,
        cluster=cluster,
        prefix=f"{cluster}-c",
        zk_hosts=zk_single.hosts,
        service_url=secure_service.url,
        cas=cfssl_cas.describe(),
        service_ca=server_ca,
        enroll=do_enroll,
        loop={"poll_wait_s": 0.3, "heartbeat_interval_s": 0.5, "keypool_size": 2},
    )
    return fleet.write_config(fleet.names[0]), cluster


def start_under(unit: Path, config: Path, log: Path) -> ManagedProcess:
    argv = [SYSTEM_PYTHON, str(LAUNCHER), str(unit), "--"]
    argv += [sys.executable, "-c", ENTRY, "connector", "run", "--config", str(config)]
    proc = ManagedProcess("seccomp-connector", argv, log_path=log)
    proc.start()
    return proc


def test_connector_issues_under_the_units_filter(
    tmp_path: Path,
    connector_config: tuple[Path, str],
    zk_single: ZooKeeperEnsemble,
    secure_service: ServiceProcess,
) -> None:
    config, cluster = connector_config
    # ExecStartPre= first: the check runs under the same filter.
    check = [SYSTEM_PYTHON, str(LAUNCHER), str(UNIT), "--", sys.executable, "-c", ENTRY]
    check += ["connector", "run", "--config", str(config), "--check"]
    checked = subprocess.run(check, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ": ok (connector" in checked.stdout
    log = tmp_path / "connector.log"
    proc = start_under(UNIT, config, log)
    try:

        def leading() -> bool:
            assert proc.running(), f"connector died (rc {proc.returncode()}):\n{proc.tail(40)}"
            with open_client(zk_single.hosts) as client:
                return read_cluster_status(client, cluster).leader is not None

        wait_for(leading, timeout=60, what="the filtered connector to lead")
        with secure_service.admin_client() as admin:
            tenant = Tenant(admin, prefix=unique("sc"), template="user-auth", key_type="rsa2048")
            tenant.create_profile()
            tenant.enroll(2)

            def issued() -> bool:
                assert proc.running(), f"connector died (rc {proc.returncode()}):\n{proc.tail(40)}"
                rows = tenant.requests()
                return len(rows) == 2 and all(r["state"] in ("issued", "delivered") for r in rows)

            wait_for(issued, timeout=60, what="2 certificates issued by the filtered connector")
        proc.signal(signal.SIGTERM)  # the graceful handover, as systemctl stop sends it
        wait_for(lambda: proc.returncode() is not None, timeout=30, what="the connector to stop")
        assert proc.returncode() == 0, proc.tail(40)
    finally:
        proc.stop(grace=5)
    text = log.read_text()
    assert re.search(r"unit_seccomp: \d+ system calls allowed; others: EPERM", text), text[:2000]
    assert "Bad system call" not in text


def test_the_old_filter_kills_the_connector_with_sigsys(
    tmp_path: Path, connector_config: tuple[Path, str]
) -> None:
    config, _ = connector_config
    proc = start_under(old_unit(tmp_path), config, tmp_path / "old.log")
    try:
        # The key pool starts before the election is joined: death comes at once.
        wait_for(lambda: proc.returncode() is not None, timeout=60, what="the connector to die")
    finally:
        proc.stop(grace=5)
    assert proc.returncode() == -signal.SIGSYS, proc.tail(40)
