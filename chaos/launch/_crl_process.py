"""The CFSSL lab's CRL server as a process: its spec file and how it is started.

    write_crl_spec(run_dir / "crl.json", {"primary": (ca_pem, ca_key_pem, access)})
    proc = crl_server_process(run_dir / "crl.json", host, port, log_path=..., wrap=None)
    proc.start()          # python -m chaos.launch.crl_server, from the project's root

The server itself is :mod:`chaos.launch.crl_server`; it reads each CA's
certdb as the read-only role, so the spec names that role's DSN and
password file, never the writer's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from chaos.launch._process import ManagedProcess
from chaos.launch.postgres import CertDBAccess

__all__ = ["crl_server_process", "write_crl_spec"]


def write_crl_spec(path: Path, cas: Mapping[str, tuple[Path, Path, CertDBAccess]]) -> None:
    """``cas``: each CA's (certificate, key, certdb access), as the CRL server reads them."""
    crl_spec = {
        name: {
            "cert": str(cert),
            "key": str(key),
            "certdb": access.reader_dsn,
            "certdb_password_file": str(access.reader_password_file),
        }
        for name, (cert, key, access) in cas.items()
    }
    path.write_text(json.dumps(crl_spec))


def crl_server_process(
    spec: Path,
    host: str,
    port: int,
    *,
    log_path: Path,
    wrap: Callable[[Sequence[str]], list[str]] | None,
) -> ManagedProcess:
    """``python -m chaos.launch.crl_server`` serving ``spec``'s CAs on ``host:port``."""
    return ManagedProcess(
        "crl-server",
        [
            sys.executable,
            "-m",
            "chaos.launch.crl_server",
            "--spec",
            str(spec),
            "--host",
            host,
            "--port",
            str(port),
        ],
        log_path=log_path,
        cwd=Path(__file__).resolve().parents[2],
        wrap=wrap,
    )
