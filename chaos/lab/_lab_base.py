"""What every part of a :class:`~chaos.lab.lab.Lab` shares: its settings, state and stop list.

    class LabParts(LabBase): ...             # chaos.lab._lab_parts: starting each part
    class LabControls(LabBase): ...          # chaos.lab._lab_controls: the drill's levers
    class Lab(LabParts, LabControls): ...    # chaos.lab.lab: start, facts

    lab = Lab(run_dir, connectors=3)         # LabBase.__init__: nothing runs yet
    lab._step("zookeeper", lab.zk.start, lab.zk.stop)   # its stop registered first
    lab.stop()                               # every stop, newest first, past errors

Constructing a lab starts nothing: it checks the options, plans the
connectors' names (``c1`` .. ``cN``) and makes the ZooKeeper and CA launchers.
Each part registers its stop before it starts (:meth:`LabBase._step`), so a
start that fails half-way is undone by :meth:`LabBase.stop`. The connectors'
ZooKeeper identities and the links' baseline latency live here as well: both
the start-up and the drill's controls use them.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from chaos.launch._process import LaunchError
from chaos.launch.ca_tier import CaTier
from chaos.launch.connector import ConnectorFleet
from chaos.launch.link_server import LinkServer
from chaos.launch.links import lan, wan
from chaos.launch.netns import Host, HostNetwork
from chaos.launch.prometheus import PrometheusServer
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble

__all__ = ["CLUSTER", "LabBase"]

# The logger the lab has always logged its start and stop under.
log = logging.getLogger("chaos.lab.lab")

CLUSTER = "lab"


class LabBase:
    """A lab's settings and the state its parts share (see :class:`chaos.lab.lab.Lab`)."""

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
        ca_timeout: float | None = None,
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
        ``ca_timeout`` (seconds): each connector's timeout for one call to each CA
        (``[[ca]] timeout_s``; None: the connector's default).
        """
        if connectors < 1:
            raise ValueError(f"connectors must be at least 1, got {connectors}")
        if hosts and ca != "cfssl":
            raise ValueError(f"--ca {ca} runs on the single-host lab only: drop --hosts")
        self.wan = wan(wan_rtt, wan_jitter) if wan_rtt is not None else None
        self.ca_lan = lan(ca_rtt, "--ca-rtt") if ca_rtt is not None else None
        self.zk_lan = lan(zk_rtt, "--zk-rtt") if zk_rtt is not None else None
        if ca_timeout is not None and not ca_timeout > 0:
            raise ValueError(f"--ca-timeout must be more than 0 s, got {ca_timeout}")
        self.ca_timeout = ca_timeout
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

    @property
    def connector_names_planned(self) -> list[str]:
        """``c1`` .. ``cN``: each its own CA client certificate and ZooKeeper identity."""
        return [f"c{i}" for i in range(1, self.connector_count + 1)]

    @property
    def topology(self) -> str:
        """``"hosts"`` (each part in its own network namespace) or ``"single-host"``."""
        return "hosts" if self.use_hosts else "single-host"

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

    def _links_baseline(self) -> None:
        """The WAN's and the LANs' latency on their links (none: no fault)."""
        assert self.links is not None
        for pattern, faults in (("service", self.wan), ("ca:*", self.ca_lan),
                                ("zk:*", self.zk_lan)):  # fmt: skip
            if faults is not None:
                self.links.set_all(pattern, faults)

    @property
    def zk_started(self) -> bool:
        return any(name == "zookeeper" for name, _ in self._stops)

    @property
    def cas_started(self) -> bool:
        return any(name == "cfssl" for name, _ in self._stops)

    def _fleet(self) -> ConnectorFleet:
        if self.fleet is None:
            raise LaunchError("the lab's connectors are not running")
        return self.fleet

    def _service(self) -> ServiceProcess:
        if self.service is None:
            raise LaunchError("the lab's service is not running")
        return self.service
