"""Starting each part of a :class:`~chaos.lab.lab.Lab`: hosts, service, connectors, links.

    lab.start()    # Lab.start: _make_hosts (hosts topology only), ZooKeeper, the CAs,
                   # _start_service (seeded), _start_connectors (their links first,
                   # when the lab has links), _start_prometheus (when asked for)
    LAB_WORK_AWARE  # the connectors' [loop] settings at lab speed

Every part comes from its own launcher in :mod:`chaos.launch`; here they are
wired together: the service's TLS certificate and its seed, each connector's
ZooKeeper identity (the layout provisioned first) and its enrolment, each
connector's fault proxies and their baseline latency, and Prometheus
scraping what runs. Each part is started through :meth:`LabBase._step
<chaos.lab._lab_base.LabBase._step>`, so a failed start-up stops it again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chaos.lab._lab_base import LabBase
from chaos.lab.seed import SeedError, seed_service
from chaos.launch._process import LaunchError
from chaos.launch.ca_tier import CaTier
from chaos.launch.connector import ConnectorFleet
from chaos.launch.deployed import enroll_as_documented
from chaos.launch.link_server import LinkServer
from chaos.launch.links import ca_target, certdb_target, node_targets, zk_targets
from chaos.launch.netns import HostNetwork
from chaos.launch.prometheus import PrometheusServer, ScrapeTLS
from chaos.launch.service import ServiceProcess, ServiceTLS, self_signed_loopback
from chaos.launch.zookeeper import ZooKeeperEnsemble
from connector.identity import EnrollmentError, enroll
from election import ClusterPaths, layout_acl, open_client, provision

__all__ = ["LAB_WORK_AWARE", "LabParts"]

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


class LabParts(LabBase):
    """How a :class:`~chaos.lab.lab.Lab` starts its parts (its ``start`` runs them in order)."""

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

    def ca_description(self, connector: str | None = None) -> dict[str, Any]:
        """The CAs as ``connector``'s configuration lists them, with the lab's
        ``ca_timeout`` on each (:meth:`CaTier.describe` otherwise)."""
        description = self.cas.describe(connector)
        if self.ca_timeout is None:
            return description
        cas = {n: {**spec, "timeout_s": self.ca_timeout} for n, spec in description["cas"].items()}
        return {**description, "cas": cas}

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
            cas=self.ca_description(),
            cas_of=self.ca_description,  # each connector its own CA credentials (OpenBao)
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
