"""The lab's PostgreSQL: where the CFSSL CAs keep their certdbs, read over the network.

    pg = PostgresServer(Path("runs/lab/postgres"))        # 127.0.0.1, a free port
    pg.start()                    # initdb once (~1 s), then the server (~0.2 s to ready)
    access = pg.create_certdb("primary")    # database certdb_primary, its roles, the schema
    access.reader_dsn             # postgresql://pfxha_reader@127.0.0.1:PORT/certdb_primary
    access.reader_password_file   # 0600; what a connector's certdb_password_file names
    access.cfssl_db_config()      # {"driver": "postgres", "data_source": ...} for cfssl serve
    pg.kill(); pg.start()         # a crash and a restart: same port, same data
    pg.stop()                     # fast shutdown (SIGINT)

    # On a lab host (a network namespace): the harness still administers it
    # through the Unix socket in the run dir, which no namespace hides.
    PostgresServer(run_dir, listen_address=host.address, wrap=host.wrap)

One server, one database per issuing CA (``certdb_<ca>``), owned by the
bootstrap superuser; the CA's writer role ``cfssl_<ca>`` may SELECT, INSERT
and UPDATE ``certificates`` and change ``ocsp_responses`` (no DELETE of a
certificate, no DDL), and one read-only role ``pfxha_reader`` for connectors,
the CRL server and the drill's checkers may only CONNECT and SELECT
``certificates``. PUBLIC loses CONNECT everywhere. Passwords are random and
live in 0600 files under ``<run_dir>/secrets``; only SCRAM-SHA-256 is
accepted over TCP (``pg_hba.conf`` is written here, not initdb's), from the
networks named by ``allow_from`` (default ``samenet``: the subnets the server
sits on, loopback in the plain lab, the bridge on a lab host). The
superuser logs in only through the Unix socket, with its own password.

initdb and postgres refuse to run as root: as root this launcher runs them as
the Debian ``postgres`` user through ``setpriv`` (which execs, so the pid we
hold is the server's own). The data directory is ``<run_dir>/data`` (0700,
owned by postgres) when that user can reach it; a run dir below a private
directory (pytest's and mkdtemp's are 0700) cannot be reached (and pytest
resets its directory to 0700 at every session start, so loosening it would
race), and then the data and socket directories live in a private directory
of their own under ``<tmp>/pfxha-pg/``, ``<run_dir>/home`` a symlink to it;
:meth:`destroy` removes it, and any provisioning removes such homes whose run
dir is gone and whose server is not running (a test's tmp dir deleted
without ``destroy``), so they do not pile up.
Durability is PostgreSQL's default (fsync on): this is the CA's record.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from chaos.launch._pg_certdb import (
    CERTDB_PG_SCHEMA,
    READER_ROLE,
    CertDBAccess,
    certdb_access_for,
    create_certdb_objects,
)
from chaos.launch._pg_home import make_home
from chaos.launch._pg_user import drop_to_server_user, own_by_server
from chaos.launch._process import LaunchError, ManagedProcess, free_port

__all__ = [
    "CERTDB_PG_SCHEMA",
    "READER_ROLE",
    "CertDBAccess",
    "PostgresServer",
    "postgres_bin_dir",
]

_SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` (Debian's layout)."""
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "postgres").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if not found:
        raise LaunchError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
            "run scripts/bootstrap.sh (Debian package postgresql)"
        )
    return found[-1]


def _write_secret(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)


class PostgresServer:
    """One PostgreSQL server of our own (never the packaged cluster) for the lab's certdbs."""

    def __init__(
        self,
        run_dir: Path,
        *,
        listen_address: str = "127.0.0.1",
        port: int | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
        allow_from: Sequence[str] = ("samenet",),
        ready_timeout: float = 30.0,
        bin_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.listen_address = listen_address
        self._want_port = port
        self._wrap = wrap or (lambda argv: argv)
        self.allow_from = tuple(allow_from)
        self.ready_timeout = ready_timeout
        self._bin_dir = bin_dir
        self._log_path = log_path
        self._state: dict[str, Any] = {}
        self._proc: ManagedProcess | None = None

    # -- places -----------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = postgres_bin_dir()
        return self._bin_dir

    @property
    def home(self) -> Path:
        """Where the server's own files live: the run dir, or a private temp dir (see above)."""
        self._load()
        return Path(self._state["home"])

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "socket"

    @property
    def secrets_dir(self) -> Path:
        return self.run_dir / "secrets"

    @property
    def log_path(self) -> Path:
        return self._log_path or self.run_dir / "logs" / "postgres.log"

    @property
    def _state_path(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def port(self) -> int:
        self._load()
        return int(self._state["port"])

    @property
    def host(self) -> str:
        return self.listen_address

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def process(self) -> ManagedProcess | None:
        return self._proc

    # -- provisioning -----------------------------------------------------------------

    def _load(self) -> None:
        if not self._state and self._state_path.exists():
            self._state = json.loads(self._state_path.read_text())
        if not self._state:
            raise LaunchError("PostgreSQL is not provisioned: call start() first")

    def _save(self) -> None:
        _write_secret(self._state_path, json.dumps(self._state, indent=1))

    def _pick_port(self) -> int:
        if self._want_port is not None:
            return self._want_port
        try:
            return free_port(self.listen_address)
        except OSError:
            # An address of a namespace we cannot bind from here: any port
            # free on loopback is free in a fresh namespace.
            return free_port("127.0.0.1")

    def provision(self) -> None:
        """initdb and our own pg_hba.conf, once; later calls only load the state."""
        if self._state_path.exists():
            self._load()
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # The server's user must pass through; nobody may list.
        os.chmod(self.run_dir, 0o711)  # noqa: S103
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        admin_password = secrets.token_hex(16)
        _write_secret(self.secrets_dir / f"{_SUPERUSER}.password", admin_password)
        home = make_home(self.run_dir)
        data, socket_dir = home / "data", home / "socket"
        for made in (data, socket_dir):
            made.mkdir(exist_ok=True)
            own_by_server(made, 0o700)
        # initdb reads the superuser's password from a file the server's user owns.
        pwfile = home / ".initdb-password"
        _write_secret(pwfile, admin_password + "\n")
        own_by_server(pwfile, 0o600)
        try:
            result = subprocess.run(
                drop_to_server_user(
                    [
                        str(self.bin_dir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        _SUPERUSER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-locale",
                        "--no-sync",  # a lab: a crash during provisioning re-provisions
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise LaunchError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        hba = [
            "# Written by chaos.launch.postgres: SCRAM only, the superuser on the socket only.",
            f"local all {_SUPERUSER} scram-sha-256",
            *(f"host all all {net} scram-sha-256" for net in self.allow_from),
        ]
        (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        self._state = {"port": self._pick_port(), "certdbs": {}, "home": str(home)}
        self._save()

    # -- the server -------------------------------------------------------------------

    def _argv(self) -> list[str]:
        return self._wrap(
            drop_to_server_user(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir.resolve()),
                    "-c",
                    f"listen_addresses={self.listen_address}",
                    "-c",
                    f"port={self.port}",
                    "-c",
                    f"unix_socket_directories={self.socket_dir}",
                    "-c",
                    "max_connections=60",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "password_encryption=scram-sha-256",
                    "-c",
                    "log_connections=off",
                    "-c",
                    "logging_collector=off",
                ]
            )
        )

    def start(self) -> None:
        """Provision if needed, then start and wait until it accepts logins."""
        self.provision()
        if self._proc is None:
            self._proc = ManagedProcess("postgres", self._argv(), log_path=self.log_path)
        proc = self._proc
        if proc.running():
            return
        proc.start()
        proc.wait_ready(
            self._accepts, timeout=self.ready_timeout, what="postgres accepting connections"
        )

    def _accepts(self) -> bool:
        try:
            with self.admin(connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def admin(self, database: str = "postgres", *, connect_timeout: int = 5) -> psycopg.Connection:
        """A superuser connection through the Unix socket (autocommit)."""
        password = (self.secrets_dir / f"{_SUPERUSER}.password").read_text().strip()
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            dbname=database,
            user=_SUPERUSER,
            password=password,
            connect_timeout=connect_timeout,
            autocommit=True,
        )

    def stop(self, grace: float = 10.0) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint, exit); SIGKILL after ``grace``."""
        if self._proc is not None:
            self._proc.stop(grace=grace, signum=signal.SIGINT)

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def pause(self) -> None:
        if self._proc is not None:
            self._proc.pause()

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.resume()

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def destroy(self) -> None:
        """Stop, and remove a data directory kept outside the run dir (the run dir stays)."""
        self.stop()
        with contextlib.suppress(LaunchError):
            self._load()
        home = self._state.get("home") if self._state else None
        if home and Path(home) != self.run_dir:
            shutil.rmtree(home, ignore_errors=True)

    # -- certdbs ----------------------------------------------------------------------

    def _password(self, role: str) -> Path:
        path = self.secrets_dir / f"{role}.password"
        if not path.exists():
            _write_secret(path, secrets.token_hex(16))
        return path

    def certdb(self, ca: str) -> CertDBAccess:
        """How to reach CA ``ca``'s certdb (made by :meth:`create_certdb`)."""
        self._load()
        if ca not in self._state["certdbs"]:
            raise LaunchError(f"no certdb for CA {ca!r}: call create_certdb({ca!r}) first")
        return self._access(ca)

    def _access(self, ca: str) -> CertDBAccess:
        return certdb_access_for(ca, self.host, self.port, self._password)

    def create_certdb(self, ca: str) -> CertDBAccess:
        """The database, schema, roles and grants for CA ``ca`` (idempotent; server running)."""
        self._load()
        access = self._access(ca)
        create_certdb_objects(self.admin, access)
        self._state["certdbs"][ca] = access.database
        self._save()
        return access

    def describe(self) -> dict[str, Any]:
        self._load()
        return {
            "host": self.host,
            "port": self.port,
            "socket_dir": str(self.socket_dir),
            "certdbs": {ca: self._access(ca).as_dict() for ca in self._state["certdbs"]},
        }

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
