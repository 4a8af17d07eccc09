"""The rules a built config must meet; each broken rule is a :class:`ConfigError`
that names its setting.

    validate(config)   # raises ConfigError("loop.poll_wait_s", "must be ...")
"""

from __future__ import annotations

from urllib.parse import urlsplit

from connector.config._settings import CASettings, ConfigError, ConnectorConfig


def validate(config: ConnectorConfig) -> None:
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
            f"must be in [2 * loop.workers, 1000] (loop.workers is {loop.workers}, so at "
            f"least {2 * loop.workers})",
        ),
        ("loop.keypool_size", 0 <= loop.keypool_size <= 4096, "must be in [0, 4096]"),
        ("loop.keys_at_once", 0 <= loop.keys_at_once <= 256, "must be in [0, 256]"),
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
