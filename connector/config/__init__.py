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

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from connector.config._env import OTHER_COMMANDS_VARIABLES, apply_env
from connector.config._settings import (
    SECTIONS,
    CASettings,
    ConfigError,
    ConnectorConfig,
    ConnectorSettings,
    LoopSettings,
    MetricsSettings,
    ServiceSettings,
    ZooKeeperSettings,
)
from connector.config._validate import validate

__all__ = [
    "OTHER_COMMANDS_VARIABLES",
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
    data = apply_env(raw, environ or {})
    known = {*SECTIONS, "ca", "templates"}
    for section in data:
        if section not in known:
            raise ConfigError(section, f"unknown section (known: {', '.join(sorted(known))})")
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
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
    validate(config)
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
