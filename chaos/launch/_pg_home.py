"""Where the lab's PostgreSQL keeps its data and socket: the run dir, or a private temp dir.

    home = make_home(run_dir)     # run_dir itself, or <tmp>/pfxha-pg/home-XXXX (run_dir/home
                                  # a symlink to it); stale homes are swept first

The server's user must search its way down to its data directory, and a
Unix socket path must fit in 107 bytes. A run dir below a private directory
(pytest's and mkdtemp's are 0700) cannot be reached, and loosening it would
race pytest resetting it at every session start; a deep run dir makes too
long a socket path. Either way the server's files live in a home of their own
under ``<tmp>/pfxha-pg/``, which names its run dir in ``owner``: a home whose
run dir is gone and whose server is not running (a test's tmp dir deleted
without :meth:`~chaos.launch.postgres.PostgresServer.destroy`) is removed by
the next provisioning, so they do not pile up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from chaos.launch._pg_user import SERVER_USER, reachable_by_server
from chaos.launch._process import LaunchError

__all__ = ["make_home"]


def make_home(run_dir: Path) -> Path:
    """The run dir when the server's user can reach it, else a private temp dir.

    A Unix socket path must also fit in 107 bytes: deep run dirs go outside too.
    """
    socket_path = run_dir / "socket" / ".s.PGSQL.65535.lock"
    if len(str(socket_path)) < 100 and reachable_by_server(run_dir):
        return run_dir
    root = _fallback_root()
    _sweep_fallback_homes(root)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=root))
    os.chmod(home, 0o711)  # noqa: S103  (search only: the server's user passes)
    (home / "owner").write_text(str(run_dir))
    if not reachable_by_server(home):
        raise LaunchError(f"the {SERVER_USER} user cannot reach {home}")
    (run_dir / "home").unlink(missing_ok=True)
    (run_dir / "home").symlink_to(home)
    return home


def _fallback_root() -> Path:
    root = Path(tempfile.gettempdir()) / "pfxha-pg"
    root.mkdir(exist_ok=True)
    if root.stat().st_uid != os.geteuid():
        raise LaunchError(f"{root} belongs to another user: remove it or set TMPDIR")
    os.chmod(root, 0o711)  # noqa: S103 - search only
    return root


def _server_alive(data: Path) -> bool:
    """True when ``data/postmaster.pid`` names a live postgres process."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


def _sweep_fallback_homes(root: Path) -> None:
    """Remove homes whose run dir is gone and whose server is not running."""
    for home in root.glob("home-*"):
        try:
            owner = Path((home / "owner").read_text().strip())
        except OSError:
            continue  # being made right now, or not ours to judge
        if owner.exists() or _server_alive(home / "data"):
            continue
        shutil.rmtree(home, ignore_errors=True)
