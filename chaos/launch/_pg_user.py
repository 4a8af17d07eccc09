"""Running the lab's PostgreSQL as the ``postgres`` user when the harness is root.

    argv = drop_to_server_user(["initdb", "-D", str(data)])   # setpriv prefix when root
    own_by_server(data, 0o700)          # chown to the server's user, then chmod
    reachable_by_server(run_dir)        # can that user search its way down to it?

initdb and postgres refuse to run as root: as root every command goes through
``setpriv`` (which execs, so the pid we hold is the server's own) and the
files it needs belong to the Debian ``postgres`` user. As anyone else nothing
changes: the harness's own user runs the server and owns its files.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from chaos.launch._process import LaunchError

__all__ = [
    "SERVER_USER",
    "as_root",
    "drop_to_server_user",
    "own_by_server",
    "reachable_by_server",
    "server_owner",
]

SERVER_USER = "postgres"


def as_root() -> bool:
    return os.geteuid() == 0


def drop_to_server_user(argv: list[str]) -> list[str]:
    """Run ``argv`` as the ``postgres`` user when we are root (setpriv execs: same pid)."""
    if not as_root():
        return argv
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups", *argv]


def server_owner() -> tuple[int, int]:
    if not as_root():
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise LaunchError("no 'postgres' user: install the Debian package postgresql") from exc
    return entry.pw_uid, entry.pw_gid


def reachable_by_server(path: Path) -> bool:
    """Can the server's user open ``path`` (search every directory above it)?"""
    if not as_root():
        return True
    probe = subprocess.run(
        drop_to_server_user(["test", "-x", str(path)]), capture_output=True, check=False
    )
    return probe.returncode == 0


def own_by_server(path: Path, mode: int) -> None:
    uid, gid = server_owner()
    os.chown(path, uid, gid)
    os.chmod(path, mode)
