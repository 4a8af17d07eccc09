"""Every cluster command against a ZooKeeper that is not there: one line, exit 1, no noise.

Run as real processes (the installed ``pfxha``), in parallel: the point is what an
operator's terminal shows, and logging set-up differs in-process.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

COMMANDS = {
    "status": (),
    "switchover": (),
    "failover": ("--to", "c2", "--force"),
    "pause": (),
    "resume": (),
    "history": (),
    "show-config": (),
}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound by us (so nobody else takes it),
    never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _pfxha() -> list[str]:
    script = shutil.which("pfxha")
    return [script] if script else [sys.executable, "-c", "from connector.cli import main; main()"]


def test_cluster_commands_fail_with_one_clear_line(closed_port: int) -> None:
    hosts = f"127.0.0.1:{closed_port}"
    procs = {
        name: subprocess.Popen(
            [*_pfxha(), name, *extra, "--hosts", hosts, "--cluster", "lab", "--timeout", "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in COMMANDS.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (name, out, err)
        assert out == "", (name, out)
        assert err.splitlines() == [
            f"Error: cannot reach ZooKeeper at {hosts} within --timeout=0.5s "
            "(is the ensemble up, is the connect string right?)"
        ], (name, err)


def test_verbose_shows_the_client_log(closed_port: int) -> None:
    hosts = f"127.0.0.1:{closed_port}"
    argv = [*_pfxha(), "status", "--hosts", hosts, "--cluster", "lab", "--timeout", "0.3", "-v"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "kazoo.client" in done.stderr
    assert "Traceback" not in done.stderr
