"""The lab's certificate authorities on real CFSSL: a root and two issuing CAs.

    lab = CfsslLab(Path("runs/lab/cfssl"))
    lab.start()                  # provisions once (idempotent), then serves everything
    lab.url("primary")           # https://127.0.0.1:PORT, `cfssl serve` of the primary CA
    lab.kill("primary")          # SIGKILL: the CA is down
    lab.start("primary")         # back, same port, same certdb
    lab.pause("secondary"); lab.resume("secondary")
    lab.crl_url("primary")       # the CDP URL written into issued certificates
    lab.describe()               # what a connector needs (also written to cas.json)
    lab.client_spec("c1")        # c1's own client certificate and key for the CAs' mutual TLS
    lab.deny("c2")               # c2 may no longer reach any CA (rolling restart of each)
    lab.certdb("primary")        # PostgresCertDB as the read-only role, over TCP
    lab.stop()                   # everything down
    lab.destroy()                # and the certdb server's data if it lives outside run_dir

    # The certdbs' PostgreSQL placed by the caller (e.g. on a lab host):
    CfsslLab(run_dir, certdb_server=PostgresServer(pg_dir, listen_address=..., wrap=...))

Provisioning (first start only): ``cfssl gencert -initca`` for the root,
``cfssl genkey`` + ``cfssl sign -profile intermediate`` for each issuing CA,
a signing config per issuing CA with the profiles of
:data:`connector.ca.STANDARD_PROFILES` (validity, usages, CDP URL, auth key
for ``/api/v1/cfssl/authsign``). Ports, auth keys and paths persist in
``state.json`` so a restarted CA or lab comes back where clients expect it.
The root only signs at provisioning and never serves.

Each issuing CA keeps its certdb in PostgreSQL (:mod:`chaos.launch.postgres`:
one database per CA, schema created there since the Debian CFSSL 1.2 does not
migrate), written by ``cfssl serve -db-config`` as the CA's writer role and
read by connectors, the CRL server and the checkers as the read-only role,
over TCP as on separate hosts. The server starts before the CAs and stops
after them; killing a CA leaves its certdb up (the database is its own
service). CRLs are served by :mod:`chaos.launch.crl_server`, a separate
process, from each CA's certdb.

Every CA serves HTTPS with mutual TLS only (:mod:`chaos.launch.ca_access`):
CFSSL 1.2 cannot disable its unauthenticated endpoints (``newcert``,
``revoke``, ``certinfo``, ``scan``, ``init_ca``), so only clients with a
certificate of the access CA whose CN is on the allowed list (``clients``,
plus the lab's own prober ``lab``) get past the handshake and the CN check.
``mtls=False`` serves plain HTTP (benchmarks compare the two; nothing else).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from chaos.launch._cfssl_tree import (
    AUTH_KEY_NAME,
    make_issuing_ca,
    make_root,
    sign_with_root,
    signing_config,
    write_secret,
)
from chaos.launch._crl_process import crl_server_process, write_crl_spec
from chaos.launch._lab_ca import LabCA
from chaos.launch._process import LaunchError, ManagedProcess, free_port, port_open
from chaos.launch.ca_access import CaAccess
from chaos.launch.netns import Host
from chaos.launch.postgres import CertDBAccess, PostgresServer
from connector.ca._certdb import PostgresCertDB
from connector.ca._profiles import STANDARD_PROFILES, CaProfile

__all__ = ["AUTH_KEY_NAME", "LAB_CLIENT", "CfsslLab", "LabCA"]

# The lab's own client identity at the CAs (readiness probes, tests, benchmarks).
LAB_CLIENT = "lab"
HOST = "127.0.0.1"


class CfsslLab:
    """Root + issuing CAs (``primary``, ``secondary``) on ``cfssl serve``, and their CDP."""

    def __init__(
        self,
        run_dir: Path,
        *,
        names: Sequence[str] = ("primary", "secondary"),
        profiles: Mapping[str, CaProfile] | None = None,
        ready_timeout: float = 20.0,
        placement: Host | None = None,
        certdb_server: PostgresServer | None = None,
        clients: Sequence[str] = (),
        mtls: bool = True,
    ) -> None:
        """``placement``: run every CA server and the CRL server inside that lab host,
        on its address (CFSSL from port 8888 up, CRLs on 8080). ``clients``: the
        names allowed through the CAs' mutual TLS (each with its own certificate),
        besides :data:`LAB_CLIENT`; more with :meth:`allow`, fewer with :meth:`deny`."""
        self.run_dir = Path(run_dir).resolve()
        self.placement = placement
        self.host = placement.address if placement is not None else HOST
        # Started before the CAs and stopped after them, by this lab; on a lab host
        # it listens on that host's address, like the CAs.
        self.certdb_server = certdb_server or PostgresServer(
            self.run_dir / "postgres",
            log_path=self.run_dir / "logs" / "postgres.log",
            listen_address=self.host,
            wrap=placement.wrap if placement is not None else None,
        )
        self.names = tuple(names)
        self.profiles = dict(profiles or STANDARD_PROFILES)
        self.ready_timeout = ready_timeout
        self.mtls = mtls
        self._initial_clients = (LAB_CLIENT, *clients)
        self.access = CaAccess(self.run_dir / "access", hosts=(self.host, HOST))
        self._state: dict[str, Any] = {}
        self._procs: dict[str, ManagedProcess] = {}
        self._crl_proc: ManagedProcess | None = None

    # -- provisioning ---------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.run_dir / "state.json"

    def provision(self) -> None:
        """Create keys, certificates, configs and certdbs once; later calls only load them."""
        if self._state_path.exists():
            self._state = json.loads(self._state_path.read_text())
            # A run dir from before mutual TLS: its configured clients (a denied
            # client stays denied: the list is only filled when missing).
            self._state.setdefault("clients", sorted(set(self._initial_clients)))
            self.access.ensure()
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Search only for others: the certdb server (run as postgres) lives below;
        # every secret in here is a 0600 file.
        os.chmod(self.run_dir, 0o711)  # noqa: S103
        root_dir = self.run_dir / "root"
        root_config = make_root(root_dir)
        crl_port = 8080 if self.placement is not None else free_port(HOST)
        state: dict[str, Any] = {
            "crl_port": crl_port,
            "cas": {},
            "clients": sorted(set(self._initial_clients)),
        }
        self.access.ensure()
        for index, name in enumerate(self.names):
            ca_dir = self.run_dir / name
            make_issuing_ca(ca_dir, name, root_dir, root_config)
            auth_key = secrets.token_hex(16)
            crl_url = f"http://{self.host}:{crl_port}/{name}.crl"
            write_secret(
                ca_dir / "config.json",
                json.dumps(signing_config(auth_key, crl_url, self.profiles), indent=1),
            )
            state["cas"][name] = {
                "port": 8888 + index if self.placement is not None else free_port(HOST),
                "auth_key": auth_key,
                "crl_url": crl_url,
            }
        write_secret(self._state_path, json.dumps(state, indent=1))
        self._state = state

    def sign_intermediate(self, csr: str) -> str:
        """The lab root signs another issuing CA's CSR (PEM in, certificate PEM out).

        For a mixed lab: an OpenBao issuing mount that chains to this root.
        """
        self.provision()
        return sign_with_root(self.run_dir / "root", csr)

    def _provision_certdbs(self) -> None:
        """The server up, each CA's database, roles and schema, and the files that name them."""
        self.certdb_server.start()
        for name in self.names:
            access = self.certdb_server.create_certdb(name)
            # cfssl's -db-config holds the writer's password: 0600.
            write_secret(self.run_dir / name / "db.json", json.dumps(access.cfssl_db_config()))
        write_crl_spec(
            self.run_dir / "crl.json",
            {
                name: (
                    self.run_dir / name / "ca.pem",
                    self.run_dir / name / "ca-key.pem",
                    self.certdb_access(name),
                )
                for name in self.names
            },
        )
        write_secret(self.run_dir / "cas.json", json.dumps(self.describe(), indent=1))

    # -- processes ---------------------------------------------------------------------

    def serve_argv(self, name: str, port: int, *, mtls: bool) -> list[str]:
        """``cfssl serve`` of CA ``name`` on ``port``, with mutual TLS or plain HTTP."""
        self._check(name)
        ca_dir = self.run_dir / name
        argv = ["cfssl", "serve", "-address", self.host, "-port", str(port)]
        argv += ["-ca", str(ca_dir / "ca.pem"), "-ca-key", str(ca_dir / "ca-key.pem")]
        argv += ["-config", str(ca_dir / "config.json"), "-db-config", str(ca_dir / "db.json")]
        if mtls:
            cert, key = self.access.server_pair
            argv += ["-tls-cert", str(cert), "-tls-key", str(key)]
            argv += ["-mutual-tls-ca", str(self.access.ca_path)]
            argv += ["-mutual-tls-cn", self.access.cn_regex(self.clients)]
        return [*argv, "-loglevel", "1"]

    @property
    def clients(self) -> list[str]:
        """The client names the CAs let through now (the lab's own prober included)."""
        if not self._state:
            raise LaunchError("the CFSSL lab is not provisioned: call start() first")
        return list(self._state.get("clients") or [LAB_CLIENT])

    def _set_clients(self, names: Sequence[str]) -> None:
        """Persist the allowed list and restart every running CA on it, one at a time."""
        self._state["clients"] = sorted(set(names))
        write_secret(self._state_path, json.dumps(self._state, indent=1))
        for name in self.names:
            proc = self._procs.pop(name, None)
            if proc is not None and proc.running():
                proc.stop(grace=5)
                self.start(name)

    def allow(self, client: str) -> None:
        """Let ``client`` (its own certificate, :meth:`client_spec`) reach every CA."""
        if client not in self.clients:
            self._set_clients([*self.clients, client])

    def deny(self, client: str) -> None:
        """Revoke ``client``'s access to every CA (the CN leaves each server's regex)."""
        if client == LAB_CLIENT:
            raise LaunchError(f"{LAB_CLIENT!r} is the lab's own prober: it cannot be denied")
        if client in self.clients:
            self._set_clients([c for c in self.clients if c != client])

    def _proc(self, name: str) -> ManagedProcess:
        self._check(name)
        proc = self._procs.get(name)
        if proc is None:
            ca_dir = self.run_dir / name
            proc = ManagedProcess(
                f"cfssl-{name}",
                self.serve_argv(name, int(self._state["cas"][name]["port"]), mtls=self.mtls),
                log_path=self.run_dir / "logs" / f"cfssl-{name}.log",
                cwd=ca_dir,
                wrap=self.placement.wrap if self.placement is not None else None,
            )
            self._procs[name] = proc
        return proc

    def _check(self, name: str) -> None:
        if not self._state:
            raise LaunchError("the CFSSL lab is not provisioned: call start() first")
        if name not in self.names:
            raise LaunchError(f"unknown CA {name!r}; the lab has {', '.join(self.names)}")

    def _ready(self, name: str) -> bool:
        port = int(self._state["cas"][name]["port"])
        if not port_open(self.host, port):
            return False
        try:
            with self.http(timeout=1.0) as http:
                reply = http.post(f"{self.url(name)}/api/v1/cfssl/info", json={})
        except httpx.HTTPError:
            return False
        return reply.status_code == 200 and bool(reply.json().get("success"))

    def start(self, name: str | None = None) -> None:
        """Start everything (provisioning first if needed), or one CA by name."""
        self.provision()
        if name is None:
            self._provision_certdbs()
            self._start_crl_server()
            for each in self.names:
                self.start(each)
            return
        proc = self._proc(name)
        if proc.running():
            return
        proc.start()
        proc.wait_ready(
            lambda: self._ready(name), timeout=self.ready_timeout, what=f"cfssl {name} serving"
        )

    def _start_crl_server(self) -> None:
        if self._crl_proc is not None and self._crl_proc.running():
            return
        port = int(self._state["crl_port"])
        self._crl_proc = crl_server_process(
            self.run_dir / "crl.json",
            self.host,
            port,
            log_path=self.run_dir / "logs" / "crl-server.log",
            wrap=self.placement.wrap if self.placement is not None else None,
        )
        self._crl_proc.start()
        self._crl_proc.wait_ready(
            lambda: port_open(self.host, port),
            timeout=self.ready_timeout,
            what="CRL server listening",
        )

    def stop(self, name: str | None = None) -> None:
        """SIGTERM one CA, or every CA and the CRL server."""
        if name is not None:
            self._proc(name).stop(grace=5)
            return
        for proc in self._procs.values():
            proc.stop(grace=5)
        if self._crl_proc is not None:
            self._crl_proc.stop(grace=5)
        self.certdb_server.stop()

    def destroy(self) -> None:
        """Stop everything and remove certdb files kept outside the run dir (see postgres)."""
        self.stop()
        self.certdb_server.destroy()

    def kill(self, name: str) -> None:
        self._proc(name).kill()

    def pause(self, name: str) -> None:
        self._proc(name).pause()

    def resume(self, name: str) -> None:
        self._proc(name).resume()

    def running(self, name: str) -> bool:
        return self._proc(name).running()

    def pid(self, name: str) -> int | None:
        return self._proc(name).pid

    def pids(self) -> dict[str, int]:
        """Every running process of the lab by name (``cfssl-<ca>``, ``crl-server``, postgres)."""
        found = {p.name: p.pid for p in self._procs.values() if p.running() and p.pid}
        if self._crl_proc is not None and self._crl_proc.running() and self._crl_proc.pid:
            found[self._crl_proc.name] = self._crl_proc.pid
        if self.certdb_server.running() and self.certdb_server.pid:
            found["postgres"] = self.certdb_server.pid
        return {name: pid for name, pid in found.items() if pid is not None}

    def __enter__(self) -> CfsslLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------------------

    def url(self, name: str) -> str:
        self._check(name)
        scheme = "https" if self.mtls else "http"
        return f"{scheme}://{self.host}:{self._state['cas'][name]['port']}"

    def auth_key(self, name: str) -> str:
        self._check(name)
        return str(self._state["cas"][name]["auth_key"])

    def crl_url(self, name: str) -> str:
        self._check(name)
        return str(self._state["cas"][name]["crl_url"])

    def certdb_access(self, name: str) -> CertDBAccess:
        """Where CA ``name``'s certdb is and the secrets of its roles."""
        self._check(name)
        return self.certdb_server.certdb(name)

    def certdb(self, name: str) -> PostgresCertDB:
        """CA ``name``'s certdb as the read-only role sees it, over TCP (as connectors do)."""
        access = self.certdb_access(name)
        return PostgresCertDB(
            access.reader_dsn,
            password_file=access.reader_password_file,
            application_name="pfxha-lab",
        )

    def ca_certificate_path(self, name: str) -> Path:
        self._check(name)
        return self.run_dir / name / "ca.pem"

    def ca_key_path(self, name: str) -> Path:
        self._check(name)
        return self.run_dir / name / "ca-key.pem"

    @property
    def root_certificate_path(self) -> Path:
        return self.run_dir / "root" / "ca.pem"

    @property
    def root_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.root_certificate_path.read_bytes())

    def ca_certificate(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_certificate_path(name).read_bytes())

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"cfssl-{name}.log"

    def http(self, client: str = LAB_CLIENT, timeout: float = 5.0) -> httpx.Client:
        """An httpx client that reaches the CAs as ``client`` (the lab's prober by default)."""
        verify = self.access.ssl_context(client) if self.mtls else True
        return httpx.Client(verify=verify, timeout=timeout)

    def client_spec(self, client: str) -> dict[str, str]:
        """``client``'s own mutual-TLS settings for every CA (``[[ca]]`` keys)."""
        if not self.mtls:
            return {}
        cert, key = self.access.client(client)
        return {
            "ca_file": str(self.access.ca_path),
            "client_certificate": str(cert),
            "client_key_file": str(key),
        }

    def ca(self, name: str, client: str = LAB_CLIENT) -> LabCA:
        tls = self.client_spec(client)
        return LabCA(
            name=name,
            url=self.url(name),
            auth_key_name=AUTH_KEY_NAME,
            auth_key=self.auth_key(name),
            certificate=self.ca_certificate_path(name),
            key=self.ca_key_path(name),
            certdb_dsn=self.certdb_access(name).reader_dsn,
            certdb_password_file=self.certdb_access(name).reader_password_file,
            root=self.root_certificate_path,
            crl_url=self.crl_url(name),
            profiles=tuple(self.profiles),
            ca_file=Path(tls["ca_file"]) if tls else None,
            client_certificate=Path(tls["client_certificate"]) if tls else None,
            client_key_file=Path(tls["client_key_file"]) if tls else None,
        )

    def describe(self) -> dict[str, Any]:
        """The issuing CAs as a connector's configuration would list them."""
        return {
            "root": str(self.root_certificate_path),
            "cas": {name: self.ca(name).as_dict() for name in self.names},
            "templates": {profile: list(self.names) for profile in self.profiles},
        }
