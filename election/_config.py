"""Election settings, validated at start-up with errors that name the setting and the rule.

    cfg = ElectionConfig(hosts="127.0.0.1:2181", cluster="lab", name="c1", session_timeout=1.0)
    cfg.validate()            # raises ConfigError("heartbeat_interval=...: must be below ...")
    cfg.heartbeat_s           # derived timings, after defaults are applied

Timing rules (Patroni-style: every derived interval must fit inside the one above it):

- ``session_timeout`` in [0.2, 60] s: ZooKeeper expires a silent member after it.
- ``lease_validity`` (default session_timeout/2) at most 2/3 of the session timeout:
  kazoo declares the connection lost after 2/3 of it without an answer, so a leader
  that trusts its lease longer could act after its session expired elsewhere.
- ``heartbeat_interval`` (default session_timeout/5) below ``lease_validity`` so a
  healthy leader re-confirms its lease before it goes stale.
- ``reconnect_max_delay`` below session_timeout/2, so a dropped connection is retried
  while the session can still be saved.

The fast path's liveness socket (see election/_liveness.py) must be reachable by the
other members, so by default it binds and advertises the local address this member
uses to reach ZooKeeper (:meth:`ElectionConfig.liveness_addresses`):

- ``liveness_host``: the IP address to bind (``0.0.0.0`` or ``::`` for every interface);
- ``liveness_advertise``: what ``/leader`` tells the others to dial (an IP address or a
  DNS name, e.g. a pod IP or a StatefulSet pod's name);
- ``liveness_port``: 0 lets the kernel pick; a fixed port is what a firewall rule needs.

Placement (election/_placement.py: the leader keeps off the ZooKeeper leader's host):

- ``colocated_server``: ``""`` off (the default), ``"auto"`` (the one server of
  ``hosts`` whose address this host owns) or the ``host:port`` of this host's server;
- ``placement_min_in_office``: no placement hand-over before this long in office and
  on the ZooKeeper leader's seat; ``placement_budget`` hand-overs per
  ``placement_budget_window`` seconds, cluster-wide, apart from the yields' budget;
- ``placement_probe_interval``: how often ``srvr`` is asked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from election._errors import ConfigError

__all__ = ["ElectionConfig"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


@dataclass(frozen=True)
class ElectionConfig:
    """Everything one member needs to take part in the election of ``cluster``."""

    hosts: str
    cluster: str
    name: str
    priority: int = 0
    nofailover: bool = False
    session_timeout: float = 1.0
    connection_timeout: float = 10.0
    lease_validity: float | None = None
    heartbeat_interval: float | None = None
    standby_poll_interval: float = 1.0
    reconnect_max_delay: float = 0.2
    fast_path: bool = True
    liveness_host: str | None = None
    liveness_advertise: str | None = None
    liveness_port: int = 0
    liveness_connect_timeout: float = 0.5
    release_holdoff: float | None = None
    auth_digest: tuple[str, str] | None = None
    member_host: str = field(default_factory=socket.gethostname)
    member_version: str = ""
    # Published in the member node for `pfxha show-config` (drift between members).
    config_digest: str = ""
    colocated_server: str = ""
    placement_min_in_office: float = 60.0
    placement_budget: int = 3
    placement_budget_window: float = 3600.0
    placement_probe_interval: float = 0.5

    # -- derived timings ----------------------------------------------------------------

    @property
    def lease_s(self) -> float:
        return self.lease_validity if self.lease_validity is not None else self.session_timeout / 2

    @property
    def heartbeat_s(self) -> float:
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return self.session_timeout / 5

    @property
    def holdoff_s(self) -> float:
        """How long a member that released the lease stays out of line for a successor."""
        if self.release_holdoff is not None:
            return self.release_holdoff
        return 2 * self.session_timeout

    def liveness_addresses(self, route_source: Callable[[], str]) -> tuple[str, str]:
        """(bind, advertised) address of the liveness socket.

        The advertised address is ``liveness_advertise``, else ``liveness_host`` unless
        that is a wildcard, else ``route_source()``: the local address of the route to
        ZooKeeper (``election._liveness.source_address_towards``), called only then.
        The bind address is ``liveness_host``, else the advertised address.
        """
        advertise = self.liveness_advertise
        if advertise is None:
            host = self.liveness_host
            advertise = host if host is not None and not _wildcard(host) else route_source()
        return (self.liveness_host or advertise), advertise

    # -- validation -----------------------------------------------------------------------

    def validate(self) -> ElectionConfig:
        """Check every rule; raise :class:`ConfigError` for the first broken one."""
        hosts = [h.strip() for h in self.hosts.split(",") if h.strip()]
        if not hosts:
            raise ConfigError("hosts", self.hosts, "must list at least one host:port")
        for host in hosts:
            if not _HOSTPORT.match(host) or not 0 < int(host.rsplit(":", 1)[1]) < 65536:
                raise ConfigError("hosts", self.hosts, f"{host!r} is not host:port")
        for setting, value in (("cluster", self.cluster), ("name", self.name)):
            if not _NAME.match(value):
                raise ConfigError(
                    setting,
                    value,
                    "must be 1-64 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit (it becomes a ZooKeeper path component)",
                )
        if not 0.2 <= self.session_timeout <= 60:
            raise ConfigError(
                "session_timeout", self.session_timeout, "must be between 0.2 and 60 seconds"
            )
        if self.connection_timeout <= 0:
            raise ConfigError("connection_timeout", self.connection_timeout, "must be positive")
        if not 0 < self.lease_s <= self.session_timeout * 2 / 3:
            raise ConfigError(
                "lease_validity",
                self.lease_s,
                f"must be positive and at most 2/3 of session_timeout "
                f"({self.session_timeout * 2 / 3:.3f}s): past that, kazoo may not yet have "
                "noticed a lost connection while the session is already expiring",
            )
        if not 0 < self.heartbeat_s < self.lease_s:
            raise ConfigError(
                "heartbeat_interval",
                self.heartbeat_s,
                f"must be positive and below lease_validity ({self.lease_s:.3f}s) so a "
                "healthy leader re-confirms its lease before it goes stale",
            )
        if self.standby_poll_interval <= 0:
            raise ConfigError("standby_poll_interval", self.standby_poll_interval, "must be > 0")
        if not 0 < self.reconnect_max_delay < self.session_timeout / 2:
            raise ConfigError(
                "reconnect_max_delay",
                self.reconnect_max_delay,
                f"must be positive and below session_timeout/2 "
                f"({self.session_timeout / 2:.3f}s) so a reconnect can save the session",
            )
        if self.liveness_connect_timeout <= 0:
            raise ConfigError(
                "liveness_connect_timeout", self.liveness_connect_timeout, "must be positive"
            )
        if self.holdoff_s < 0:
            raise ConfigError("release_holdoff", self.holdoff_s, "must not be negative")
        if self.fast_path:
            self._validate_liveness()
        self._validate_placement()
        if self.auth_digest is not None:
            user, password = self.auth_digest
            if not user or ":" in user:
                raise ConfigError("auth_digest", "(user, ***)", "user must be non-empty, no ':'")
            if not password:
                raise ConfigError("auth_digest", "(user, ***)", "password must not be empty")
        return self

    def _validate_placement(self) -> None:
        _check_placement(self)

    def _validate_liveness(self) -> None:
        bind: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if self.liveness_host is not None:
            try:
                bind = ipaddress.ip_address(self.liveness_host)
            except ValueError:
                raise ConfigError(
                    "liveness_host", self.liveness_host, "must be an IP address to bind"
                ) from None
        advertise = self.liveness_advertise
        if advertise is not None:
            advertised = _ip_or_none(advertise)
            if advertised is None and not _DNS_NAME.match(advertise):
                raise ConfigError(
                    "liveness_advertise",
                    advertise,
                    "must be an IP address or a DNS name the other members can dial",
                )
            if advertised is None and bind is None:
                raise ConfigError(
                    "liveness_advertise",
                    advertise,
                    "is a DNS name, which cannot be bound: also set liveness_host (e.g. 0.0.0.0)",
                )
            if advertised is not None and advertised.is_unspecified:
                raise ConfigError(
                    "liveness_advertise",
                    advertise,
                    "must be an address others can dial, not a wildcard (bind the wildcard "
                    "with liveness_host)",
                )
            # A specific bind address takes one IP version ("::" also takes IPv4 on Linux).
            if (
                advertised is not None
                and bind is not None
                and not bind.is_unspecified
                and advertised.version != bind.version
            ):
                raise ConfigError(
                    "liveness_advertise",
                    advertise,
                    f"must be of the same IP version as liveness_host ({self.liveness_host})",
                )
        if isinstance(self.liveness_port, bool) or not 0 <= self.liveness_port <= 65535:
            raise ConfigError(
                "liveness_port", self.liveness_port, "must be 0 (any free port) to 65535"
            )


def _check_placement(cfg: ElectionConfig) -> None:
    server = cfg.colocated_server.strip()
    if server not in ("", "auto") and (
        not _HOSTPORT.match(server) or not 0 < int(server.rsplit(":", 1)[1]) < 65536
    ):
        raise ConfigError("colocated_server", server, "must be empty (off), 'auto' or host:port")
    if cfg.placement_min_in_office < 0:
        raise ConfigError("placement_min_in_office", cfg.placement_min_in_office, "must be >= 0")
    if isinstance(cfg.placement_budget, bool) or cfg.placement_budget < 0:
        raise ConfigError(
            "placement_budget", cfg.placement_budget, "must be >= 0 (0: never hand over)"
        )
    if cfg.placement_budget_window <= 0:
        raise ConfigError("placement_budget_window", cfg.placement_budget_window, "must be > 0")
    if not 0.05 <= cfg.placement_probe_interval <= 60:
        raise ConfigError(
            "placement_probe_interval",
            cfg.placement_probe_interval,
            "must be between 0.05 and 60 seconds",
        )


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _wildcard(host: str) -> bool:
    address = _ip_or_none(host)
    return address is not None and address.is_unspecified
