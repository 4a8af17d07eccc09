"""The connector's settings, one frozen dataclass per section, and :class:`ConfigError`.

Parsing and validation are :mod:`connector.config`; this module only says what
a setting is and its default, and how a whole config digests and turns into
the election's settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector._version import __version__

if TYPE_CHECKING:
    from election import ElectionConfig


class ConfigError(ValueError):
    """A setting is missing or breaks a rule; ``setting`` names it (``loop.poll_wait_s``)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class ConnectorSettings:
    name: str
    cluster: str
    mode: str = "hybrid"
    priority: int = 0
    nofailover: bool = False


@dataclass(frozen=True)
class ZooKeeperSettings:
    hosts: str
    session_timeout: float = 1.0
    connection_timeout: float = 10.0
    fast_path: bool = True
    # Unset: the local address of this host's route to ZooKeeper, bound and advertised
    # (see election._config); a fixed port is what a firewall rule needs.
    liveness_host: str | None = None
    liveness_advertise: str | None = None
    liveness_port: int = 0
    # Placement (docs/election.md): "" off, "auto" (the one server of hosts whose
    # address this host owns) or this host's server as host:port.
    colocated_server: str = ""
    auth_user: str | None = None
    auth_password_file: str | None = None


@dataclass(frozen=True)
class ServiceSettings:
    url: str
    timeout_s: float = 10.0
    # Issue 8: CA file that verifies the service's TLS certificate, and the
    # directory `pfxha connector enroll --out` wrote (key.pem 0600, cert.pem).
    ca_file: str | None = None
    identity_dir: str | None = None
    renew_check_s: float = 3600.0


@dataclass(frozen=True)
class CASettings:
    name: str
    url: str
    # PEM of this issuing CA's certificate and of its root: every certificate it
    # returns is checked against them before it is packed into a PFX.
    certificate: str
    root: str
    # Hex key for CFSSL's authenticated sign endpoint (a secret: a 0600 file);
    # required with kind = "cfssl".
    auth_key_file: str | None = None
    # "cfssl" (the default) or "openbao" (OpenBao or HashiCorp Vault PKI).
    kind: str = "cfssl"
    # The CA's certdb, read to find what it issued (reconciliation): PostgreSQL
    # over the network as a read-only role (the password in a 0600 file) ...
    certdb_dsn: str | None = None
    certdb_password_file: str | None = None
    # ... or a SQLite file on this host (CFSSL's default; only when they share a host).
    certdb: str | None = None
    # "certdb" (the default) or "off": the operator's explicit choice to run
    # without reconciliation at this CA (logged at start, exported as a metric).
    reconcile: str = "certdb"
    crl_url: str | None = None
    timeout_s: float = 2.0
    # CA bundle (PEM) that verifies the CA's TLS certificate when url is https://
    # (default: certifi's public CAs, not the system store).
    ca_file: str | None = None
    # kind = "openbao": the PKI mount that issues, a role per template named
    # role_prefix + template, AppRole credentials in 0600 files, and the other
    # nodes of the cluster (comma-separated) tried when url does not answer.
    mount: str | None = None
    role_prefix: str = ""
    role_id_file: str | None = None
    secret_id_file: str | None = None
    approle_mount: str = "approle"
    cluster_urls: str | None = None
    # kind = "openbao": how long a cluster that answers but is electing a new active
    # node is waited for before the template's next CA is used (default 0: at once).
    failover_patience_s: float | None = None
    # This connector's own client certificate and key (0600) for the CA's mutual
    # TLS: CFSSL serves every endpoint only to allowed client CNs (docs/pki.md).
    client_certificate: str | None = None
    client_key_file: str | None = None

    def as_spec(self) -> dict[str, str | float | None]:
        """The shape ``connector.ca.ca_from_dict`` reads."""
        return {
            "name": self.name,
            "kind": self.kind,
            "mount": self.mount,
            "role_prefix": self.role_prefix,
            "role_id_file": self.role_id_file,
            "secret_id_file": self.secret_id_file,
            "approle_mount": self.approle_mount,
            "cluster_urls": self.cluster_urls,
            "failover_patience_s": self.failover_patience_s,
            "url": self.url,
            "auth_key_file": self.auth_key_file,
            "certificate": self.certificate,
            "root": self.root,
            "certdb": self.certdb,
            "certdb_dsn": self.certdb_dsn,
            "certdb_password_file": self.certdb_password_file,
            "reconcile": self.reconcile,
            "crl_url": self.crl_url,
            "ca_file": self.ca_file,
            "client_certificate": self.client_certificate,
            "client_key_file": self.client_key_file,
        }

    @property
    def certdb_source(self) -> str | None:
        """Where reconciliation reads (a DSN without password, or a path); None: nowhere."""
        return self.certdb_dsn or self.certdb


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = "127.0.0.1:9464"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


@dataclass(frozen=True)
class LoopSettings:
    poll_wait_s: float = 1.0
    batch_size: int = 100
    heartbeat_interval_s: float = 2.0
    revocation_interval_s: float = 1.0
    reconcile_interval_s: float = 30.0
    # How often every member asks each CA's certdb whether it answers (health,
    # readiness, and when waiting intents can be reconciled again).
    certdb_probe_s: float = 10.0
    # Requests polled at once when saturated: the hand holds up to 2 * workers
    # waiting for their key and polls again once workers are left (their keys,
    # made keys_at_once at a time, cover the poll's round trip). 8 rather than 4:
    # half the polls and shared calls per request; 16 saved CPU again, but the
    # leader sat idle longer, for no more throughput (docs/connector.md).
    workers: int = 8
    # Requests in hand at most (polled, not finished): up to 2 * workers wait for
    # their key, the rest for the network (connector/agent/hand.py).
    max_in_hand: int = 64
    # Pre-generated keys kept per key type, so bursts and takeovers do not wait.
    keypool_size: int = 16
    # Keys made at once when the pool is empty (0: one per CPU the connector may
    # run on, read at start): the rest wait their turn (connector/pki/keypool.py).
    keys_at_once: int = 0
    # Longest a single CA call (with its retries) may take; also capped by the lease.
    ca_deadline_s: float = 5.0
    # Back-off after the service or every CA failed.
    backoff_s: float = 0.5
    # Key types the pool pre-generates (comma-separated profile words).
    keypool_types: str = "rsa2048"
    # Consecutive CA failures that open its circuit, and how long it stays open.
    breaker_threshold: int = 2
    breaker_reset_s: float = 2.0
    # Work-aware leadership (docs/election.md): every member probes the service and
    # each CA this often, each probe given this long.
    probe_interval_s: float = 2.0
    probe_timeout_s: float = 2.0
    # A member rewrites what it reaches in its member node on change and at least
    # this often (readers judge freshness by it): one ZooKeeper write per period.
    reach_refresh_s: float = 5.0
    # A leader that has not reached the service (or any CA of a template) for this
    # long hands over to a standby that does; 0 turns yielding off.
    yield_after_s: float = 15.0
    # Anti-flapping: no yield before this long in office; a member that yielded
    # stays out of the line this long (and until it reaches what it could not);
    # at most yield_budget voluntary hand-overs per window, cluster-wide.
    min_in_office_s: float = 60.0
    hold_down_s: float = 60.0
    yield_budget: int = 3
    yield_budget_window_s: float = 600.0
    # Placement (with zookeeper.colocated_server): a leader on the ZooKeeper leader's
    # host hands over after this long in office (and on that seat), at most
    # placement_budget times per window, cluster-wide, apart from the yields.
    placement_min_in_office_s: float = 60.0
    placement_budget: int = 3
    placement_budget_window_s: float = 3600.0
    # A key whose request was settled without its certificate (requeued after an
    # interrupted or ambiguous sign) is searched again this long, and a certificate
    # that turns up late is revoked (connector/agent/late.py); 0 turns it off.
    late_window_s: float = 30.0


@dataclass(frozen=True)
class ConnectorConfig:
    connector: ConnectorSettings
    zookeeper: ZooKeeperSettings
    service: ServiceSettings
    cas: tuple[CASettings, ...]
    templates: Mapping[str, tuple[str, ...]]
    metrics: MetricsSettings
    loop: LoopSettings
    source: str = "<memory>"

    def ca(self, name: str) -> CASettings:
        for ca in self.cas:
            if ca.name == name:
                return ca
        raise KeyError(name)

    def digest(self) -> str:
        """A short digest of the settings every member of the cluster should share.

        Left out: what differs between members on purpose (name, priority,
        nofailover, the liveness address, the metrics listen address, where the
        file was read from) and every secret: the files holding secrets (and the
        identity directory) are left out, path and content. The certificates the
        configuration names (``certificate``, ``root``, ``ca_file``) count by their
        content, not their path, so members that keep the same CA files in
        different places agree, and a member with another CA file does not.
        """
        data = asdict(self)
        del data["source"]
        for section, keys in _PER_MEMBER.items():
            for key in keys:
                data[section].pop(key, None)
        data["service"]["ca_file"] = _file_digest(self.service.ca_file)
        for ca in data["cas"]:
            for key in ("auth_key_file", "certdb_password_file"):
                del ca[key]
            for key in ("certificate", "root", "ca_file"):
                ca[key] = _file_digest(ca[key])
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def election_config(self) -> ElectionConfig:
        """The validated :class:`election.ElectionConfig` of this connector.

        The election owns its timing rules; a rule it rejects is reported here
        under this file's setting name (``zookeeper.session_timeout``).
        """
        from election import ConfigError as ElectionConfigError
        from election import ElectionConfig

        zk = self.zookeeper
        auth = None
        if zk.auth_user is not None and zk.auth_password_file is not None:
            auth = (zk.auth_user, _read_secret(zk.auth_password_file))
        try:
            cfg = ElectionConfig(
                hosts=zk.hosts,
                cluster=self.connector.cluster,
                name=self.connector.name,
                priority=self.connector.priority,
                nofailover=self.connector.nofailover,
                session_timeout=zk.session_timeout,
                connection_timeout=zk.connection_timeout,
                fast_path=zk.fast_path,
                liveness_host=zk.liveness_host,
                liveness_advertise=zk.liveness_advertise,
                liveness_port=zk.liveness_port,
                colocated_server=zk.colocated_server,
                placement_min_in_office=self.loop.placement_min_in_office_s,
                placement_budget=self.loop.placement_budget,
                placement_budget_window=self.loop.placement_budget_window_s,
                auth_digest=auth,
                member_version=__version__,
                config_digest=self.digest(),
            )
            return cfg.validate()
        except ElectionConfigError as exc:
            setting = str(getattr(exc, "setting", "zookeeper"))
            section = "connector" if setting in _CONNECTOR_ELECTION_SETTINGS else "zookeeper"
            if setting == "auth_digest":
                setting = "auth_user"
            raise ConfigError(f"{section}.{setting}", str(exc)) from exc


_CONNECTOR_ELECTION_SETTINGS = frozenset({"name", "cluster", "priority", "nofailover"})

# Settings that differ between the members of one cluster on purpose (not digested).
_PER_MEMBER: dict[str, tuple[str, ...]] = {
    "connector": ("name", "priority", "nofailover"),
    "zookeeper": ("liveness_host", "liveness_advertise", "colocated_server", "auth_password_file"),
    "service": ("identity_dir",),
    "metrics": ("listen",),
}

SECTIONS: dict[str, type[Any]] = {
    "connector": ConnectorSettings,
    "zookeeper": ZooKeeperSettings,
    "service": ServiceSettings,
    "metrics": MetricsSettings,
    "loop": LoopSettings,
}


def _file_digest(path: str | None) -> str | None:
    """What a named (non-secret) file holds, for :meth:`ConnectorConfig.digest`."""
    if path is None:
        return None
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError("zookeeper.auth_password_file", f"cannot read {path}: {exc}") from exc
