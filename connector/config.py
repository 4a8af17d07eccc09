"""Connector configuration: a TOML file, every setting overridable from the environment.

::

    [connector]
    name = "c1"
    cluster = "prod"
    # mode = "hybrid"          # informational; the service applies the revocation table
    # priority = 0             # higher takes over first
    # nofailover = false       # never lead (maintenance)

    [zookeeper]
    hosts = "zk1:2181,zk2:2181,zk3:2181"
    session_timeout = 1.0
    # connection_timeout = 10.0   # how long start-up waits for ZooKeeper
    fast_path = true
    # liveness_host = "0.0.0.0"      # bind address of the fast path's liveness socket
    # liveness_advertise = "10.0.0.5"  # what /leader tells the others to dial
    # liveness_port = 7946           # 0: any free port (a firewall wants a fixed one)
    # colocated_server = "auto"      # placement: keep the lease off the ZooKeeper leader's host
    # auth_user = "connector"
    # auth_password_file = "/etc/pfxha/zk-password"

    [service]
    url = "https://service.example:8443"
    # timeout_s = 10.0

    [[ca]]
    name = "primary"
    url = "http://ca1:8888"
    auth_key_file = "/etc/pfxha/ca1.key"      # hex auth key of /api/v1/cfssl/authsign
    certificate = "/etc/pfxha/ca1.pem"        # the issuing CA's certificate
    root = "/etc/pfxha/root.pem"              # its root (trust anchor)
    # What the CA issued, for reconciliation: its certdb over the network as
    # a read-only role (the password in a 0600 file, never in the DSN).
    certdb_dsn = "postgresql://pfxha_reader@ca1:5432/certdb_primary"
    certdb_password_file = "/etc/pfxha/certdb-primary.password"
    # reconcile = "off"     # only on purpose: orphans at this CA are never found
    # ca_file = "/etc/pfxha/ca-tls.pem"       # verifies an https:// CA (default: certifi)
    # This connector's own client certificate for the CA's mutual TLS (docs/pki.md):
    # client_certificate = "/etc/pfxha/ca-client.pem"
    # client_key_file = "/etc/pfxha/ca-client.key"   # 0600

    [templates]
    user-auth = ["primary"]                   # CAs in failover order, each a [[ca]] name

    [metrics]
    listen = "127.0.0.1:9464"

    [loop]
    poll_wait_s = 1.0
    batch_size = 100

Environment overrides are ``PFXHA_<SECTION>_<KEY>`` (``PFXHA_ZOOKEEPER_HOSTS``,
``PFXHA_LOOP_POLL_WAIT_S``); a CA setting is ``PFXHA_CA_<NAME>_<KEY>`` (the name
upper-cased, ``-`` as ``_``) and a template's CA list is
``PFXHA_TEMPLATES_<NAME>="primary,secondary"``. Any other ``PFXHA_*`` variable
is an error (a misspelt override must not be ignored), except those other
pfxha commands read (:data:`OTHER_COMMANDS_VARIABLES`). Every error is a
:class:`ConfigError` whose message starts with the setting it is about.

Parsing checks types (``workers = 4.9`` is an error, not 4), URLs (a scheme
and a host), key types (nothing weaker than RSA-2048) and which CA each
template names; it reads no file. What the files say (they exist, secrets are
0600, certificates parse and chain, the identity's key matches its
certificate) is :func:`connector.config_files.check_files`, run by
``pfxha connector run`` and its ``--check``.

Every CFSSL ``[[ca]]`` needs its certdb (``certdb_dsn`` + ``certdb_password_file``,
or ``certdb``, a SQLite path on the same host) unless ``reconcile = "off"``:
CFSSL cannot be asked what it issued, so without its certdb a new leader
cannot find a deposed leader's orphans, and that must never happen silently.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from connector._version import __version__

if TYPE_CHECKING:
    from election import ElectionConfig

__all__ = [
    "CASettings",
    "ConfigError",
    "ConnectorConfig",
    "ConnectorSettings",
    "LoopSettings",
    "MetricsSettings",
    "ServiceSettings",
    "ZooKeeperSettings",
    "load_config",
    "parse_config",
]

_ENV_PREFIX = "PFXHA_"

# PFXHA_* variables that other pfxha commands read; the connector leaves them be.
# Any other PFXHA_* variable that is not a connector setting is an error: a
# misspelt override would otherwise be ignored while the operator trusts it.
OTHER_COMMANDS_VARIABLES = frozenset(
    {
        "PFXHA_ZOOKEEPER_AUTH",  # pfxha status / switchover
        "PFXHA_CLUSTER",  # pfxha status / switchover
        "PFXHA_ENROLL_TOKEN",  # pfxha connector enroll
        "PFXHA_ADMIN_TOKEN",  # pfxha service run
        "PFXHA_LAB_DIR",  # chaos toolkit experiments
    }
)


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
    # Requests of one batch processed side by side (keygen releases the GIL).
    workers: int = 4
    # Requests in hand at most (polled, not finished): up to 2 * workers wait for
    # their key, the rest for the network (connector/agent/hand.py).
    max_in_hand: int = 64
    # Pre-generated keys kept per key type, so bursts and takeovers do not wait.
    keypool_size: int = 16
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

_SECTIONS: dict[str, type[Any]] = {
    "connector": ConnectorSettings,
    "zookeeper": ZooKeeperSettings,
    "service": ServiceSettings,
    "metrics": MetricsSettings,
    "loop": LoopSettings,
}


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> ConnectorConfig:
    """Read ``path`` (TOML), apply ``PFXHA_*`` overrides from ``environ``, validate."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc
    return parse_config(raw, os.environ if environ is None else environ, source=str(path))


def parse_config(
    raw: Mapping[str, Any], environ: Mapping[str, str] | None = None, *, source: str = "<memory>"
) -> ConnectorConfig:
    """Build and validate a config from parsed TOML plus environment overrides."""
    data = _apply_env(raw, environ or {})
    known = {*_SECTIONS, "ca", "templates"}
    for section in data:
        if section not in known:
            raise ConfigError(section, f"unknown section (known: {', '.join(sorted(known))})")
    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        built[section] = _build(section, cls, data.get(section, {}))
    cas = _build_cas(data.get("ca", []))
    templates = _build_templates(data.get("templates", {}))
    config = ConnectorConfig(
        connector=built["connector"],
        zookeeper=built["zookeeper"],
        service=built["service"],
        cas=cas,
        templates=templates,
        metrics=built["metrics"],
        loop=built["loop"],
        source=source,
    )
    _validate(config)
    return config


def _coerce(setting: str, value: Any, annotation: str) -> Any:
    wants = annotation.replace(" | None", "")
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(setting, "is required")
    if wants == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(setting, f"must be true or false, got {value!r}")
    if wants == "int":
        # int(4.9) would be 4: a float is refused, not truncated.
        if isinstance(value, bool | float):
            raise ConfigError(setting, f"must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(setting, f"must be an integer, got {value!r}") from None
    if wants == "float":
        if isinstance(value, bool):
            raise ConfigError(setting, f"must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(setting, f"must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(setting, f"must be a finite number, got {value!r}")
        return number
    if not isinstance(value, str) or not value:
        raise ConfigError(setting, f"must be a non-empty string, got {value!r}")
    return value


def _build(section: str, cls: type[Any], values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(section, "must be a table")
    allowed = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in allowed:
            raise ConfigError(
                f"{section}.{key}", f"unknown setting (known: {', '.join(sorted(allowed))})"
            )
    kwargs: dict[str, Any] = {}
    for name, spec in allowed.items():
        setting = f"{section}.{name}"
        if name in values:
            kwargs[name] = _coerce(setting, values[name], str(spec.type))
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(setting, "is required")
    return cls(**kwargs)


def _build_cas(values: Any) -> tuple[CASettings, ...]:
    if isinstance(values, Mapping):  # env overrides may have produced {name: {...}}
        values = [{"name": name, **spec} for name, spec in values.items()]
    if not isinstance(values, list) or not values:
        raise ConfigError("ca", "at least one [[ca]] table is required")
    cas = []
    for index, spec in enumerate(values):
        label = f"ca[{spec.get('name', index) if isinstance(spec, Mapping) else index}]"
        cas.append(_build(label, CASettings, spec))
    names = [ca.name for ca in cas]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"ca[{name}].name", "CA names must be unique")
    return tuple(cas)


def _build_templates(values: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(values, Mapping) or not values:
        raise ConfigError("templates", "at least one template -> [CA names] is required")
    templates: dict[str, tuple[str, ...]] = {}
    for name, cas in values.items():
        if isinstance(cas, str):
            cas = [c.strip() for c in cas.split(",") if c.strip()]
        if not isinstance(cas, list) or not cas or not all(isinstance(c, str) for c in cas):
            raise ConfigError(f"templates.{name}", "must be a non-empty list of CA names")
        templates[str(name)] = tuple(cas)
    return templates


def _validate(config: ConnectorConfig) -> None:
    known_cas = {ca.name for ca in config.cas}
    for template, ca_names in config.templates.items():
        for ca_name in ca_names:
            if ca_name not in known_cas:
                raise ConfigError(
                    f"templates.{template}", f"names CA {ca_name!r}, not a [[ca]] name"
                )
    if config.connector.mode not in {"hybrid", "standalone"}:
        raise ConfigError("connector.mode", "must be 'hybrid' or 'standalone'")
    zk = config.zookeeper
    if (zk.auth_user is None) != (zk.auth_password_file is None):
        raise ConfigError(
            "zookeeper.auth_password_file", "auth_user and auth_password_file go together"
        )
    _check_url("service.url", config.service.url)
    for ca in config.cas:
        _check_url(f"ca[{ca.name}].url", ca.url)
        if ca.crl_url is not None:
            _check_url(f"ca[{ca.name}].crl_url", ca.crl_url)
        if ca.kind == "openbao":
            _validate_openbao(ca)
        elif ca.kind == "cfssl":
            if ca.auth_key_file is None:
                raise ConfigError(f"ca[{ca.name}].auth_key_file", 'is required with kind = "cfssl"')
            if ca.failover_patience_s is not None:
                raise ConfigError(
                    f"ca[{ca.name}].failover_patience_s",
                    'only goes with kind = "openbao" (a CFSSL CA has no cluster to elect)',
                )
            _validate_certdb(ca)
            _validate_ca_tls(ca)
        else:
            raise ConfigError(f"ca[{ca.name}].kind", "must be 'cfssl' or 'openbao'")
    _check_key_types("loop.keypool_types", config.loop.keypool_types)
    try:
        host, port = config.metrics.host_port
    except ValueError:
        raise ConfigError("metrics.listen", "must be HOST:PORT") from None
    if not host or not 0 <= port <= 65535:
        raise ConfigError("metrics.listen", "must be HOST:PORT")
    _validate_timing(config)


def _check_url(setting: str, url: str) -> None:
    """``http(s)://host[:port][/path]``: a scheme, a host and, if given, a valid port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(setting, f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in {"http", "https"}:
        raise ConfigError(setting, f"{url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ConfigError(setting, f"{url!r} names no host")
    if port == 0:
        raise ConfigError(setting, f"{url!r} has port 0")


def _check_key_types(setting: str, words: str) -> None:
    """Every comma-separated key type parses, and none is weaker than the policy allows."""
    from connector.pki.keys import KeyPolicyError, KeyType

    names = [w.strip() for w in words.split(",") if w.strip()]
    if not names:
        raise ConfigError(setting, "must name at least one key type")
    for word in names:
        try:
            KeyType.parse(word)
        except KeyPolicyError as exc:
            raise ConfigError(setting, str(exc)) from None


_RECONCILE_MODES = ("certdb", "off")


def _validate_ca_tls(ca: CASettings) -> None:
    """A client certificate comes with its key, and only over https://."""
    label = f"ca[{ca.name}]"
    if (ca.client_certificate is None) != (ca.client_key_file is None):
        missing = "client_key_file" if ca.client_key_file is None else "client_certificate"
        raise ConfigError(
            f"{label}.{missing}", "client_certificate and client_key_file go together"
        )
    if ca.client_certificate is not None and not ca.url.startswith("https://"):
        raise ConfigError(
            f"{label}.url",
            "must be https:// when client_certificate is set (mutual TLS to the CA)",
        )


def _validate_certdb(ca: CASettings) -> None:
    """A CFSSL CA has a certdb to reconcile against, or reconciliation is off on purpose."""
    label = f"ca[{ca.name}]"
    if ca.reconcile not in _RECONCILE_MODES:
        raise ConfigError(f"{label}.reconcile", "must be 'certdb' or 'off'")
    if ca.certdb_dsn is not None and ca.certdb is not None:
        raise ConfigError(f"{label}.certdb", "set certdb_dsn or certdb (a SQLite file), not both")
    if ca.certdb_dsn is not None:
        if not ca.certdb_dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"{label}.certdb_dsn", "must be a postgresql://user@host:port/database URL"
            )
        netloc = ca.certdb_dsn.split("://", 1)[1].split("/", 1)[0]
        if ":" in netloc.rpartition("@")[0]:
            raise ConfigError(
                f"{label}.certdb_dsn",
                "must not carry a password: put it in certdb_password_file (0600)",
            )
        if ca.certdb_password_file is None:
            raise ConfigError(f"{label}.certdb_password_file", "is required with certdb_dsn")
    elif ca.certdb_password_file is not None:
        raise ConfigError(f"{label}.certdb_password_file", "only goes with certdb_dsn")
    if ca.reconcile == "certdb" and ca.certdb_source is None:
        raise ConfigError(
            f"{label}.certdb_dsn",
            "is required: CFSSL cannot be asked what it issued, so without its certdb a "
            "new leader cannot find the certificates a deposed leader left behind "
            '(set reconcile = "off" to run without reconciliation at this CA, on purpose)',
        )


_CFSSL_ONLY = ("auth_key_file", "certdb_dsn", "certdb_password_file", "certdb")


def _validate_openbao(ca: CASettings) -> None:
    """An OpenBao CA names its mount and AppRole files; CFSSL-only settings are refused."""
    label = f"ca[{ca.name}]"
    for setting in ("mount", "role_id_file", "secret_id_file"):
        if getattr(ca, setting) is None:
            raise ConfigError(f"{label}.{setting}", 'is required with kind = "openbao"')
    for setting in _CFSSL_ONLY:
        if getattr(ca, setting) is not None:
            raise ConfigError(
                f"{label}.{setting}",
                'only goes with kind = "cfssl" (OpenBao is searched through its own API)',
            )
    if ca.reconcile != "certdb":
        raise ConfigError(
            f"{label}.reconcile", 'is not used with kind = "openbao" (it is always searched)'
        )
    if ca.crl_url is not None:
        raise ConfigError(f"{label}.crl_url", 'is not used with kind = "openbao" (<mount>/crl)')
    if ca.failover_patience_s is not None and not 0 <= ca.failover_patience_s <= 60:
        raise ConfigError(f"{label}.failover_patience_s", "must be between 0 and 60 seconds")
    assert ca.mount is not None
    if not ca.mount.strip("/") or " " in ca.mount:
        raise ConfigError(f"{label}.mount", f"{ca.mount!r} is not a mount path (pki_issuing)")
    for index, extra in enumerate(u.strip() for u in (ca.cluster_urls or "").split(",")):
        if extra:
            _check_url(f"{label}.cluster_urls[{index}]", extra)


def _validate_timing(config: ConnectorConfig) -> None:
    loop, zk, service = config.loop, config.zookeeper, config.service
    rules: list[tuple[str, bool, str]] = [
        ("zookeeper.session_timeout", zk.session_timeout > 0, "must be > 0"),
        ("zookeeper.connection_timeout", zk.connection_timeout > 0, "must be > 0"),
        ("loop.poll_wait_s", 0 < loop.poll_wait_s <= 30, "must be in (0, 30]"),
        ("loop.batch_size", 1 <= loop.batch_size <= 500, "must be in [1, 500]"),
        ("loop.workers", 1 <= loop.workers <= 64, "must be in [1, 64]"),
        (
            "loop.max_in_hand",
            2 * loop.workers <= loop.max_in_hand <= 1000,
            "must be in [2 * loop.workers, 1000]",
        ),
        ("loop.keypool_size", 0 <= loop.keypool_size <= 4096, "must be in [0, 4096]"),
        ("loop.heartbeat_interval_s", loop.heartbeat_interval_s > 0, "must be > 0"),
        ("loop.revocation_interval_s", loop.revocation_interval_s > 0, "must be > 0"),
        ("loop.reconcile_interval_s", loop.reconcile_interval_s > 0, "must be > 0"),
        ("loop.certdb_probe_s", loop.certdb_probe_s > 0, "must be > 0"),
        ("loop.ca_deadline_s", loop.ca_deadline_s > 0, "must be > 0"),
        ("loop.backoff_s", 0 < loop.backoff_s <= 60, "must be in (0, 60]"),
        ("loop.breaker_threshold", loop.breaker_threshold >= 1, "must be >= 1"),
        ("loop.breaker_reset_s", loop.breaker_reset_s > 0, "must be > 0"),
        ("loop.probe_interval_s", loop.probe_interval_s > 0, "must be > 0"),
        ("loop.probe_timeout_s", loop.probe_timeout_s > 0, "must be > 0"),
        ("loop.reach_refresh_s", loop.reach_refresh_s > 0, "must be > 0"),
        ("loop.yield_after_s", loop.yield_after_s >= 0, "must be >= 0 (0: never yield)"),
        ("loop.min_in_office_s", loop.min_in_office_s >= 0, "must be >= 0"),
        ("loop.hold_down_s", loop.hold_down_s >= 0, "must be >= 0"),
        ("loop.yield_budget", loop.yield_budget >= 0, "must be >= 0 (0: never yield)"),
        ("loop.yield_budget_window_s", loop.yield_budget_window_s > 0, "must be > 0"),
        ("loop.late_window_s", 0 <= loop.late_window_s <= 3600, "must be in [0, 3600]"),
        ("loop.placement_min_in_office_s", loop.placement_min_in_office_s >= 0, "must be >= 0"),
        ("loop.placement_budget", loop.placement_budget >= 0, "must be >= 0 (0: never)"),
        ("loop.placement_budget_window_s", loop.placement_budget_window_s > 0, "must be > 0"),
        (
            "loop.yield_after_s",
            loop.yield_after_s == 0
            or loop.yield_after_s >= 2 * loop.probe_interval_s + loop.probe_timeout_s,
            "must be 0 or >= 2 * loop.probe_interval_s + loop.probe_timeout_s (one lost "
            "probe must never move the lease)",
        ),
        (
            "loop.poll_wait_s",
            loop.yield_after_s == 0 or loop.poll_wait_s < loop.yield_after_s,
            "must be < loop.yield_after_s (a long-poll must end before a hand-over is due)",
        ),
        (
            "loop.reach_refresh_s",
            loop.yield_after_s == 0 or loop.reach_refresh_s <= loop.yield_after_s,
            "must be <= loop.yield_after_s (a standby's report must be fresh when a "
            "leader decides to hand over to it)",
        ),
        (
            "loop.poll_wait_s",
            loop.poll_wait_s <= loop.heartbeat_interval_s,
            "must be <= loop.heartbeat_interval_s (a long-poll must not starve heartbeats)",
        ),
        (
            "service.timeout_s",
            service.timeout_s > loop.poll_wait_s,
            "must be > loop.poll_wait_s (a long-poll must return before the HTTP timeout)",
        ),
    ]
    for setting, ok, rule in rules:
        if not ok:
            raise ConfigError(setting, rule)


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


def _env_key(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def _apply_env(raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``PFXHA_<SECTION>_<KEY>`` variables on the parsed file."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    listed = data.get("ca", [])
    if not isinstance(listed, (list, Mapping)):
        raise ConfigError("ca", "must be a list of [[ca]] tables")
    cas: list[dict[str, Any]] = [dict(c) for c in listed if isinstance(c, Mapping)]
    if cas or "ca" in data:
        data["ca"] = cas
    for variable, value in sorted(environ.items()):
        if not variable.startswith(_ENV_PREFIX) or variable in OTHER_COMMANDS_VARIABLES:
            continue
        rest = variable[len(_ENV_PREFIX) :]
        section, _, key = rest.partition("_")
        section = section.lower()
        if section in _SECTIONS:
            names = {_env_key(f.name): f.name for f in fields(_SECTIONS[section])}
            if key not in names:
                _unknown_variable(variable)
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(section, "must be a table")
            table[names[key]] = value
        elif section == "ca":
            _apply_ca_env(data, cas, key, value)
        elif section == "templates":
            templates = data.setdefault("templates", {})
            if not isinstance(templates, dict):
                raise ConfigError("templates", "must be a table")
            match = [name for name in templates if _env_key(name) == key]
            templates[match[0] if match else key.lower().replace("_", "-")] = value
        else:
            _unknown_variable(variable)
    return data


def _known_variables() -> list[str]:
    names = [
        f"{_ENV_PREFIX}{section.upper()}_{_env_key(f.name)}"
        for section, cls in _SECTIONS.items()
        for f in fields(cls)
    ]
    names += [f"{_ENV_PREFIX}CA_<NAME>_{_env_key(f.name)}" for f in fields(CASettings)]
    return [*names, f"{_ENV_PREFIX}TEMPLATES_<NAME>", *sorted(OTHER_COMMANDS_VARIABLES)]


def _unknown_variable(variable: str) -> NoReturn:
    close = difflib.get_close_matches(variable, _known_variables(), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(
        variable,
        f"unknown environment variable: no connector setting has this name{hint} "
        f"(PFXHA_<SECTION>_<KEY>, PFXHA_CA_<NAME>_<KEY>, PFXHA_TEMPLATES_<NAME>)",
    )


def _apply_ca_env(data: dict[str, Any], cas: list[dict[str, Any]], key: str, value: str) -> None:
    settings = sorted((_env_key(f.name) for f in fields(CASettings)), key=len, reverse=True)
    for setting in settings:
        if key.endswith("_" + setting):
            ca_key = key[: -len(setting) - 1]
            field_name = setting.lower()
            break
    else:
        _unknown_variable(f"{_ENV_PREFIX}CA_{key}")
    for ca in cas:
        if _env_key(str(ca.get("name", ""))) == ca_key:
            ca[field_name] = value
            return
    cas.append({"name": ca_key.lower().replace("_", "-"), field_name: value})
    data["ca"] = cas
