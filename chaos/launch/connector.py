"""N connector processes (``pfxha connector run``) from generated config files.

    fleet = ConnectorFleet(run_dir / "connectors", count=3, cluster="lab",
                           zk_hosts=zk.hosts, service_url=svc.url, cas=cfssl.describe())
    fleet.start()                          # c1, c2, c3, each its own process, log and config
    leader = fleet.wait_for_leader()       # "c2": from ZooKeeper's /leader, not their word
    fleet.kill(leader)                     # SIGKILL; also stop / pause / resume / start
    fleet.metrics_url("c1")                # http://127.0.0.1:PORT/metrics
    fleet.restart("c1", version="0.2.0")   # SIGTERM, then start again as release 0.2.0
    fleet.stop()

    # Each connector through its own links (chaos.launch.links): per-connector URLs.
    ConnectorFleet(..., endpoints={"c1": ConnectorEndpoints(service_url=..., cas={
        "primary": {"url": ..., "certdb_dsn": ...}})})

Each connector gets ``<dir>/<name>/connector.toml`` plus its secrets (the CA
auth keys) in 0600 files beside it, and logs JSON lines to
``<dir>/<name>/connector.log``. ``loop`` overrides go into ``[loop]``
(e.g. ``{"poll_wait_s": 0.2}``).

``restart(name, version=...)`` is the lab's stand-in for installing another
release: the same code, started with ``connector._version.__version__`` set to
``version`` before anything reads it, so the member node, ``pfxha status``,
``show-config`` and ``pfxha_connector_build_info`` report that release.

The config text comes from :mod:`chaos.launch._connector_config`, who leads
from :mod:`chaos.launch._fleet_leader` (ZooKeeper's word, not the connectors').
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from chaos.launch._connector_config import ConnectorEndpoints, render_config
from chaos.launch._fleet_leader import FleetLeadership
from chaos.launch._key_pool_metrics import key_pool_full
from chaos.launch._process import LaunchError, ManagedProcess, free_port, wait_for
from chaos.launch.deployed import LabConnector, deploy_config, toml_value
from chaos.launch.netns import Host
from chaos.launch.unit import SystemdUnit, pfxha_script, run_checks

__all__ = ["ConnectorEndpoints", "ConnectorFleet", "key_pool_full", "render_config", "toml_value"]

_ENTRY = "from connector.cli import main; main()"


def _entry(version: str | None) -> str:
    """The ``python -c`` program of a connector; with ``version``, reporting that release."""
    if version is None:
        return _ENTRY
    return f"import connector._version as v; v.__version__ = {version!r}; {_ENTRY}"


class ConnectorFleet(FleetLeadership):
    def __init__(
        self,
        directory: Path,
        *,
        count: int = 3,
        cluster: str,
        zk_hosts: str,
        service_url: str,
        cas: Mapping[str, Any],
        session_timeout: float = 1.0,
        fast_path: bool = True,
        loop: Mapping[str, Any] | None = None,
        prefix: str = "c",
        env: Mapping[str, str] | None = None,
        service_ca: Path | None = None,
        enroll: Callable[[str, Path], None] | None = None,
        zk_auth: tuple[str, Path] | Callable[[str], tuple[str, Path]] | None = None,
        placement: Mapping[str, Host] | None = None,
        cas_of: Callable[[str], Mapping[str, Any]] | None = None,
        endpoints: Mapping[str, ConnectorEndpoints] | None = None,
        ca_client: Callable[[str], Mapping[str, str]] | None = None,
        deployed: bool = False,
    ) -> None:
        """``cas`` is :meth:`chaos.launch.cfssl.CfsslLab.describe` (``cas`` and ``templates``).

        ``cas_of(name)``: connector ``name``'s own description instead (its own CA
        credentials, e.g. :meth:`chaos.launch.ca_tier.CaTier.describe`).

        ``placement``: the lab host each connector runs in (by name); its metrics
        endpoint then listens on that host's address, port 9464.
        ``endpoints``: per-connector service and CA URLs (by name), e.g. each
        connector through its own fault proxies (:mod:`chaos.launch.links`).
        ``deployed``: each connector as deploy/systemd sets one up
        (:mod:`chaos.launch.deployed`): its config from the reference template, its
        files installed where that names them, enrolled into the unit's state
        directory, checked and run with the unit's ExecStartPre/ExecStart.
        Needs ``placement``, ``service_ca``, ``enroll`` and ``zk_auth``.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.directory = Path(directory)
        self.cluster = cluster
        self.zk_hosts = zk_hosts
        self.service_url = service_url
        self.description = cas
        self.cas_of = cas_of
        self.session_timeout = session_timeout
        self.fast_path = fast_path
        self.loop = dict(loop or {})
        self.env = dict(env or {})
        # Issue 8: the CA that verifies the service's TLS certificate, and how a
        # connector gets its client certificate (enroll(name, identity_dir)).
        self.service_ca = service_ca
        self.enroll = enroll
        # ZooKeeper digest ACLs: (user, password file 0600), shared or per connector.
        self.zk_auth = zk_auth
        # Each connector's own mutual-TLS pair for the CAs (CfsslLab.client_spec).
        self.ca_client = ca_client
        self.names = [f"{prefix}{i}" for i in range(1, count + 1)]
        self.placement = dict(placement or {})
        self.endpoints = dict(endpoints or {})
        unknown = sorted(set(self.endpoints) - set(self.names))
        if unknown:
            raise ValueError(f"endpoints name unknown connectors: {', '.join(unknown)}")
        missing = [n for n in self.names if self.placement and n not in self.placement]
        if missing:
            raise ValueError(f"placement names no host for {', '.join(missing)}")
        self.metrics_ports = {
            name: 9464 if name in self.placement else free_port() for name in self.names
        }
        self._procs: dict[str, ManagedProcess] = {}
        self._versions: dict[str, str] = {}
        self.unit: SystemdUnit | None = None
        if deployed:
            if not self.placement or service_ca is None or enroll is None or zk_auth is None:
                raise ValueError("deployed connectors need placement, service_ca, enroll, zk_auth")
            self.unit = SystemdUnit.read()
        self._unit_env: dict[str, dict[str, str]] = {}
        self._unit_argv: dict[str, dict[str, list[str]]] = {}

    # -- files ----------------------------------------------------------------

    def config_path(self, name: str) -> Path:
        if self.unit is not None:  # /etc/pfxha/connector.toml, moved (chaos.launch.deployed)
            return self.directory / name / "etc" / "connector.toml"
        return self.directory / name / "connector.toml"

    def log_path(self, name: str) -> Path:
        return self.directory / name / "connector.log"

    def address(self, name: str) -> str:
        """The address connector ``name`` listens on: its lab host's, or loopback."""
        host = self.placement.get(name)
        return host.address if host is not None else "127.0.0.1"

    def metrics_url(self, name: str) -> str:
        return f"http://{self.address(name)}:{self.metrics_ports[name]}"

    def write_config(self, name: str) -> Path:
        home = self.directory / name
        home.mkdir(parents=True, exist_ok=True)
        own = self.endpoints.get(name, ConnectorEndpoints())
        cas: dict[str, dict[str, Any]] = {}
        description = self.cas_of(name) if self.cas_of is not None else self.description
        client = self.ca_client(name) if self.ca_client is not None else {}
        for ca_name, spec in description["cas"].items():
            # The spec, then this connector's endpoints (its links), then its credentials.
            entry = {**spec, **own.cas.get(ca_name, {})}
            if "auth_key" in spec:
                key_file = home / f"ca-{ca_name}.key"
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(str(spec["auth_key"]))
                # CFSSL's mutual TLS; an OpenBao entry names its AppRole files already.
                entry = {**entry, "auth_key_file": str(key_file), **client}
            cas[ca_name] = entry
        service: dict[str, Any] = {}
        if self.service_ca is not None:
            service["ca_file"] = str(self.service_ca)
        if self.enroll is not None and self.unit is None:
            identity = home / "identity"
            if not (identity / "cert.pem").exists():
                self.enroll(name, identity)
            service["identity_dir"] = str(identity)
        zookeeper: dict[str, Any] = {}
        if self.zk_auth is not None:
            user, password_file = self.zk_auth(name) if callable(self.zk_auth) else self.zk_auth
            zookeeper = {"auth_user": user, "auth_password_file": str(password_file)}
        if self.unit is not None:
            return self._write_deployed(name, home, cas, Path(zookeeper["auth_password_file"]))
        text = render_config(
            zookeeper=zookeeper,
            service=service,
            name=name,
            cluster=self.cluster,
            zk_hosts=own.zk_hosts or self.zk_hosts,
            service_url=own.service_url or self.service_url,
            cas=cas,
            templates=self.description["templates"],
            metrics_listen=f"{self.address(name)}:{self.metrics_ports[name]}",
            session_timeout=self.session_timeout,
            fast_path=self.fast_path,
            loop=self.loop,
        )
        path = self.config_path(name)
        path.write_text(text)
        return path

    def _write_deployed(
        self, name: str, home: Path, cas: Mapping[str, Mapping[str, Any]], zk_password: Path
    ) -> Path:
        """Config from the template, files installed, enrolled, credentials loaded."""
        assert self.unit is not None
        assert self.service_ca is not None
        assert self.enroll is not None
        lab = LabConnector(
            name=name,
            cluster=self.cluster,
            zk_hosts=self.zk_hosts,
            session_timeout=self.session_timeout,
            service_url=self.service_url,
            service_ca=self.service_ca,
            templates=self.description["templates"],
            cas=cas,
            zk_password_file=zk_password,
            loop=self.loop,
        )
        config, plan = deploy_config(lab, home, self.unit)
        identity = Path(plan.prefixes["/var/lib/pfxha"]) / "identity"
        if not (identity / "cert.pem").exists():
            self.enroll(name, identity)  # docs/deployment.md step 4
        credentials = self.unit.load_credentials(plan.prefixes)
        env = {**self.unit.environment, "CREDENTIALS_DIRECTORY": str(credentials)}
        if self.metrics_ports[name] != 9464:  # a second connector on a host (add)
            env["PFXHA_METRICS_LISTEN"] = f"{self.address(name)}:{self.metrics_ports[name]}"
        self._unit_env[name] = env
        self._unit_argv[name] = {
            "start": self.unit.command(self.unit.exec_start, plan.prefixes, pfxha_script()),
            "pre": self.unit.command(self.unit.exec_start_pre, plan.prefixes, pfxha_script()),
        }
        return config

    def unit_command(self, name: str, which: str = "start") -> list[str]:
        """The unit's ExecStart (``"pre"``: ExecStartPre) for ``name``, paths moved."""
        if name not in self._unit_argv:
            self.write_config(name)
        return list(self._unit_argv[name][which])

    def add(self, name: str) -> None:
        """One more connector (started with :meth:`start`); on a lab host, c1's, port 9465."""
        if name in self.names:
            raise LaunchError(f"connector {name!r} is already in the fleet")
        if self.placement:
            self.placement[name] = self.placement[self.names[0]]
            self.metrics_ports[name] = 9465
        else:
            self.metrics_ports[name] = free_port()
        self.names.append(name)

    def remove(self, name: str) -> None:
        """Stop connector ``name`` and forget it (its directory stays)."""
        self.stop(name, grace=5)
        self._procs.pop(name, None)
        self.names.remove(name)
        self.placement.pop(name, None)
        self.metrics_ports.pop(name, None)

    # -- processes ------------------------------------------------------------

    def process(self, name: str) -> ManagedProcess:
        proc = self._procs.get(name)
        if proc is None:
            config = self.write_config(name)
            env = self.env
            if self.unit is not None:  # the unit's command line, its environment
                argv = self.unit_command(name)
                env = {**self.env, **self._unit_env[name]}
            else:
                entry = _entry(self._versions.get(name))
                argv = [sys.executable, "-c", entry, "connector", "run", "--config", str(config)]
                argv += ["--log-format", "json"]
            if name in self.placement:
                argv = self.placement[name].wrap(argv)
            proc = ManagedProcess(name, argv, log_path=self.log_path(name), env=env)
            self._procs[name] = proc
        return proc

    def start(self, name: str | None = None, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Start one connector (or all); wait until its health endpoint answers."""
        names = self.names if name is None else [name]
        fresh = [n for n in names if n not in self._procs]
        if self.unit is not None and fresh:  # the unit's ExecStartPre, all at once
            run_checks(
                {
                    n: (
                        self.placement[n].wrap(self.unit_command(n, "pre")),
                        {**self.env, **self._unit_env[n]},
                    )
                    for n in fresh
                }
            )
        for each in names:
            proc = self.process(each)
            if not proc.running():
                proc.start()
        if wait:
            for each in names:
                self.wait_serving(each, timeout=timeout)

    def wait_serving(self, name: str, timeout: float = 30.0) -> None:
        proc = self.process(name)

        def serving() -> bool:
            if not proc.running():
                raise LaunchError(f"connector {name} exited:\n{proc.tail()}")
            try:
                return httpx.get(self.metrics_url(name) + "/healthz", timeout=0.5).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(serving, timeout=timeout, what=f"connector {name} serving /healthz")

    def restart(
        self,
        name: str,
        *,
        version: str | None = None,
        grace: float = 10.0,
        timeout: float = 30.0,
    ) -> None:
        """Stop ``name`` gracefully (SIGTERM: a leader hands its lease over) and start it
        again, as an upgrade does; ``version``: the release the new process reports.

        Waits until the new process serves ``/healthz``; its log continues the old one.
        """
        self.stop(name, grace=grace)
        self._procs.pop(name, None)
        if version is not None:
            self._versions[name] = version
        self.start(name, timeout=timeout)

    def key_pool_full(self, name: str, timeout: float = 1.0) -> bool | None:
        """Whether connector ``name``'s key pool holds as many keys as it keeps when full
        (its ``/metrics``); None when it does not answer.

        A standby restarted a moment ago makes its first keys on demand if it takes
        over before its pool filled: the drill waits for full pools between rounds.
        """
        try:
            body = httpx.get(self.metrics_url(name) + "/metrics", timeout=timeout).text
        except httpx.HTTPError:
            return None
        return key_pool_full(body)

    def pid(self, name: str) -> int | None:
        return self.process(name).pid

    def running(self, name: str) -> bool:
        return self.process(name).running()

    def kill(self, name: str) -> None:
        self.process(name).kill()

    def stop(self, name: str | None = None, grace: float = 10.0) -> None:
        for each in self.names if name is None else [name]:
            if each in self._procs:
                self._procs[each].stop(grace=grace)

    def pause(self, name: str) -> None:
        self.process(name).pause()

    def resume(self, name: str) -> None:
        self.process(name).resume()

    def __enter__(self) -> ConnectorFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_lines(self, name: str) -> list[str]:
        try:
            return self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return []
