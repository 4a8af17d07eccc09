"""Connector configuration: TOML, environment overrides, errors that name the setting."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from connector._version import __version__
from connector.config import ConfigError, load_config, parse_config

GOOD = """
[connector]
name = "c1"
cluster = "lab"

[zookeeper]
hosts = "127.0.0.1:2181"
session_timeout = 1.0
connection_timeout = 0.5

[service]
url = "http://127.0.0.1:8080"

[[ca]]
name = "primary"
url = "http://127.0.0.1:8888"
auth_key_file = "/tmp/k1"
certificate = "/tmp/primary.pem"
root = "/tmp/root.pem"
certdb = "/tmp/primary.db"

[[ca]]
name = "secondary"
url = "http://127.0.0.1:8889"
auth_key_file = "/tmp/k2"
certificate = "/tmp/secondary.pem"
root = "/tmp/root.pem"
certdb_dsn = "postgresql://pfxha_reader@127.0.0.1:5432/certdb_secondary"
certdb_password_file = "/tmp/certdb.password"

[templates]
user-auth = ["primary", "secondary"]

[loop]
poll_wait_s = 0.5
batch_size = 50
"""


DUPLICATE_CA = """
[[ca]]
name = "primary"
url = "http://x:1"
auth_key_file = "k"
certificate = "c"
root = "r"
"""


def write(tmp_path: Path, text: str = GOOD) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), environ={})
    assert config.connector.name == "c1"
    assert config.connector.mode == "hybrid"
    assert config.templates == {"user-auth": ("primary", "secondary")}
    assert config.ca("primary").certdb == "/tmp/primary.db"  # SQLite, on the CA's host
    secondary = config.ca("secondary")
    assert secondary.certdb_dsn == "postgresql://pfxha_reader@127.0.0.1:5432/certdb_secondary"
    assert secondary.certdb_source == secondary.certdb_dsn
    assert secondary.reconcile == "certdb"
    assert config.loop.batch_size == 50
    assert config.metrics.host_port == ("127.0.0.1", 9464)


def test_env_overrides_every_kind_of_setting(tmp_path: Path) -> None:
    env = {
        "PFXHA_ZOOKEEPER_HOSTS": "zk1:2181,zk2:2181",
        "PFXHA_LOOP_POLL_WAIT_S": "0.25",
        "PFXHA_ZOOKEEPER_FAST_PATH": "false",
        "PFXHA_CA_SECONDARY_URL": "http://10.0.0.2:8888",
        "PFXHA_TEMPLATES_USER_AUTH": "secondary,primary",
        "PFXHA_METRICS_LISTEN": "0.0.0.0:9500",
        "PFXHA_ENROLL_TOKEN": "ignored: read by `pfxha connector enroll`",
        "PFXHA_ZOOKEEPER_AUTH": "ignored: read by `pfxha switchover`",
        "HOME": "/root",
    }
    config = load_config(write(tmp_path), environ=env)
    assert config.zookeeper.hosts == "zk1:2181,zk2:2181"
    assert config.loop.poll_wait_s == 0.25
    assert config.zookeeper.fast_path is False
    assert config.ca("secondary").url == "http://10.0.0.2:8888"
    assert config.templates["user-auth"] == ("secondary", "primary")
    assert config.metrics.host_port == ("0.0.0.0", 9500)


def test_settings_entirely_from_env() -> None:
    env = {
        "PFXHA_CONNECTOR_NAME": "c9",
        "PFXHA_CONNECTOR_CLUSTER": "prod",
        "PFXHA_ZOOKEEPER_HOSTS": "zk:2181",
        "PFXHA_SERVICE_URL": "https://svc:8443",
        "PFXHA_CA_PRIMARY_URL": "http://ca:8888",
        "PFXHA_CA_PRIMARY_AUTH_KEY_FILE": "/run/secrets/ca.key",
        "PFXHA_CA_PRIMARY_CERTIFICATE": "/etc/pfxha/ca.pem",
        "PFXHA_CA_PRIMARY_ROOT": "/etc/pfxha/root.pem",
        "PFXHA_CA_PRIMARY_CERTDB_DSN": "postgresql://pfxha_reader@ca:5432/certdb_primary",
        "PFXHA_CA_PRIMARY_CERTDB_PASSWORD_FILE": "/run/secrets/certdb.password",
        "PFXHA_TEMPLATES_WIFI": "primary",
    }
    config = parse_config({}, env)
    assert config.ca("primary").certdb_password_file == "/run/secrets/certdb.password"
    assert config.connector.name == "c9"
    assert config.ca("primary").url == "http://ca:8888"
    assert config.ca("primary").auth_key_file == "/run/secrets/ca.key"
    assert config.templates == {"wifi": ("primary",)}


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "env", "setting", "words"),
    [
        (edit('name = "c1"\n', ""), {}, "connector.name", "required"),
        (GOOD, {"PFXHA_LOOP_BATCH_SIZE": "1000"}, "loop.batch_size", "[1, 500]"),
        (GOOD, {"PFXHA_LOOP_BATCH_SIZE": "many"}, "loop.batch_size", "integer"),
        (GOOD, {"PFXHA_ZOOKEEPER_FAST_PATH": "maybe"}, "zookeeper.fast_path", "true or false"),
        (
            edit('"primary", "secondary"', '"primary", "tertiary"'),
            {},
            "templates.user-auth",
            "tertiary",
        ),
        (
            edit("session_timeout = 1.0", "session_timeout = 0"),
            {},
            "zookeeper.session_timeout",
            "> 0",
        ),
        (GOOD, {"PFXHA_LOOP_POLL_WAIT_S": "5"}, "loop.poll_wait_s", "heartbeat_interval_s"),
        (GOOD, {"PFXHA_SERVICE_TIMEOUT_S": "0.4"}, "service.timeout_s", "poll_wait_s"),
        (GOOD, {"PFXHA_LOOP_YIELD_AFTER_S": "1"}, "loop.yield_after_s", "lost probe"),
        (
            GOOD,
            {
                "PFXHA_LOOP_YIELD_AFTER_S": "4.5",
                "PFXHA_LOOP_PROBE_INTERVAL_S": "1",
                "PFXHA_LOOP_PROBE_TIMEOUT_S": "1",
            },
            "loop.reach_refresh_s",
            "fresh",
        ),
        (GOOD, {"PFXHA_LOOP_YIELD_BUDGET": "-1"}, "loop.yield_budget", ">= 0"),
        (GOOD, {"PFXHA_CONNECTOR_MODE": "cloudy"}, "connector.mode", "hybrid"),
        (GOOD, {"PFXHA_SERVICE_URL": "ftp://x"}, "service.url", "http"),
        (GOOD, {"PFXHA_METRICS_LISTEN": "nowhere"}, "metrics.listen", "HOST:PORT"),
        (
            GOOD,
            {"PFXHA_ZOOKEEPER_AUTH_USER": "connector"},
            "zookeeper.auth_password_file",
            "together",
        ),
        (GOOD + "\n[extra]\nx = 1\n", {}, "extra", "unknown section"),
        (
            edit("batch_size = 50", "batch_size = 50\nbatchsize = 3"),
            {},
            "loop.batchsize",
            "unknown setting",
        ),
        (
            GOOD + DUPLICATE_CA,
            {},
            "ca[primary].name",
            "unique",
        ),
        (
            edit('user-auth = ["primary", "secondary"]', "user-auth = []"),
            {},
            "templates.user-auth",
            "non-empty",
        ),
        # Issue 17 item 2: types are not truncated, weak keys and hostless URLs refused.
        (edit("batch_size = 50", "batch_size = 50\nworkers = 4.9"), {}, "loop.workers", "4.9"),
        (GOOD, {"PFXHA_LOOP_WORKERS": "4.9"}, "loop.workers", "integer"),
        (edit("batch_size = 50", "batch_size = 50.0"), {}, "loop.batch_size", "integer"),
        # The hand holds at least the key stage (two per worker).
        (GOOD, {"PFXHA_LOOP_MAX_IN_HAND": "7"}, "loop.max_in_hand", "so at least 16"),
        (GOOD, {"PFXHA_LOOP_KEYS_AT_ONCE": "-1"}, "loop.keys_at_once", "[0, 256]"),
        (
            edit("session_timeout = 1.0", "session_timeout = inf"),
            {},
            "zookeeper.session_timeout",
            "finite",
        ),
        (GOOD, {"PFXHA_LOOP_CA_DEADLINE_S": "nan"}, "loop.ca_deadline_s", "finite"),
        (
            edit("batch_size = 50", 'batch_size = 50\nkeypool_types = "rsa1024"'),
            {},
            "loop.keypool_types",
            "at least 2048",
        ),
        (
            GOOD,
            {"PFXHA_LOOP_KEYPOOL_TYPES": "p256, dsa1024"},
            "loop.keypool_types",
            "unknown key type",
        ),
        (GOOD, {"PFXHA_LOOP_KEYPOOL_TYPES": " , "}, "loop.keypool_types", "at least one"),
        (GOOD, {"PFXHA_SERVICE_URL": "http://"}, "service.url", "no host"),
        (GOOD, {"PFXHA_SERVICE_URL": "https://:8443/x"}, "service.url", "no host"),
        (GOOD, {"PFXHA_CA_PRIMARY_URL": "http://ca1:99999"}, "ca[primary].url", "not a valid URL"),
        (GOOD, {"PFXHA_CA_PRIMARY_URL": "ca1:8888"}, "ca[primary].url", "http://"),
        (GOOD, {"PFXHA_CA_SECONDARY_CRL_URL": "ftp://crl"}, "ca[secondary].crl_url", "http://"),
        # A PFXHA_* variable that is no setting is an error, with the likely one named.
        (
            GOOD,
            {"PFXHA_ZOOKEEPER_SESION_TIMEOUT": "0.5"},
            "PFXHA_ZOOKEEPER_SESION_TIMEOUT",
            "did you mean PFXHA_ZOOKEEPER_SESSION_TIMEOUT?",
        ),
        (
            GOOD,
            {"PFXHA_ZOOKEPER_HOSTS": "zk:2181"},
            "PFXHA_ZOOKEPER_HOSTS",
            "PFXHA_ZOOKEEPER_HOSTS",
        ),
        (GOOD, {"PFXHA_SERVICE_DB": "x"}, "PFXHA_SERVICE_DB", "unknown environment variable"),
        (GOOD, {"PFXHA_CA_PRIMARY_URLL": "http://x"}, "PFXHA_CA_PRIMARY_URLL", "unknown"),
        (GOOD, {"PFXHA_CONNECTOR": "c2"}, "PFXHA_CONNECTOR", "unknown"),
        # Reconciliation is never silently off: a CFSSL CA names its certdb.
        (edit('certdb = "/tmp/primary.db"\n', ""), {}, "ca[primary].certdb_dsn", "required"),
        (GOOD, {"PFXHA_CA_SECONDARY_RECONCILE": "maybe"}, "ca[secondary].reconcile", "'off'"),
        (
            edit('certdb_password_file = "/tmp/certdb.password"\n', ""),
            {},
            "ca[secondary].certdb_password_file",
            "required with certdb_dsn",
        ),
        (
            GOOD,
            {"PFXHA_CA_PRIMARY_CERTDB_DSN": "postgresql://r@h:5432/d"},
            "ca[primary].certdb",
            "not both",
        ),
        (
            edit("pfxha_reader@127.0.0.1", "pfxha_reader:pw@127.0.0.1"),
            {},
            "ca[secondary].certdb_dsn",
            "must not carry a password",
        ),
        (
            GOOD,
            {"PFXHA_CA_SECONDARY_CERTDB_DSN": "mysql://r@h/d"},
            "ca[secondary].certdb_dsn",
            "postgresql://",
        ),
        # Issue 18: the CA's mutual TLS needs both halves of the pair, over https://.
        (
            GOOD,
            {"PFXHA_CA_PRIMARY_CLIENT_CERTIFICATE": "/etc/pfxha/ca-client.pem"},
            "ca[primary].client_key_file",
            "go together",
        ),
        (
            GOOD,
            {
                "PFXHA_CA_PRIMARY_CLIENT_CERTIFICATE": "/etc/pfxha/ca-client.pem",
                "PFXHA_CA_PRIMARY_CLIENT_KEY_FILE": "/etc/pfxha/ca-client.key",
            },
            "ca[primary].url",
            "https://",
        ),
    ],
)
def test_errors_name_the_setting(
    tmp_path: Path, text: str, env: dict[str, str], setting: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    assert info.value.setting == setting
    assert str(info.value).startswith(setting)
    assert words in str(info.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[connector\n"), environ={})


def test_no_ca_at_all() -> None:
    raw: dict[str, Any] = {
        "connector": {"name": "c", "cluster": "x"},
        "zookeeper": {"hosts": "h:1"},
        "service": {"url": "http://s"},
        "templates": {"t": ["a"]},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, {})
    assert info.value.setting == "ca"


def test_election_rules_are_reported_under_the_config_setting(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), environ={"PFXHA_ZOOKEEPER_SESSION_TIMEOUT": "0.1"})
    with pytest.raises(ConfigError) as info:
        config.election_config()
    assert info.value.setting == "zookeeper.session_timeout"
    assert "0.2" in str(info.value)


def test_election_config_carries_identity_and_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "zk-password"
    secret.write_text("s3cret\n")
    env = {
        "PFXHA_ZOOKEEPER_AUTH_USER": "connector",
        "PFXHA_ZOOKEEPER_AUTH_PASSWORD_FILE": str(secret),
        "PFXHA_CONNECTOR_PRIORITY": "5",
    }
    election = load_config(write(tmp_path), environ=env).election_config()
    assert (election.name, election.cluster, election.priority) == ("c1", "lab", 5)
    assert election.auth_digest == ("connector", "s3cret")


def test_liveness_settings_come_from_the_environment(tmp_path: Path) -> None:
    # Kubernetes: the pod IP through the downward API, a fixed port for the firewall.
    env = {
        "PFXHA_ZOOKEEPER_LIVENESS_HOST": "0.0.0.0",
        "PFXHA_ZOOKEEPER_LIVENESS_ADVERTISE": "10.244.1.7",
        "PFXHA_ZOOKEEPER_LIVENESS_PORT": "7946",
    }
    election = load_config(write(tmp_path), environ=env).election_config()
    assert (election.liveness_host, election.liveness_port) == ("0.0.0.0", 7946)
    assert election.liveness_addresses(lambda: "unused") == ("0.0.0.0", "10.244.1.7")


def test_a_broken_liveness_setting_is_named(tmp_path: Path) -> None:
    env = {"PFXHA_ZOOKEEPER_LIVENESS_ADVERTISE": "0.0.0.0"}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path), environ=env).election_config()
    assert info.value.setting == "zookeeper.liveness_advertise"
    assert "wildcard" in str(info.value)


def test_reconcile_off_needs_no_certdb_and_is_kept() -> None:
    text = edit('certdb = "/tmp/primary.db"\n', 'reconcile = "off"\n')
    config = parse_config(tomllib.loads(text), {})
    assert config.ca("primary").reconcile == "off"
    assert config.ca("primary").certdb_source is None
    assert config.ca("primary").as_spec()["reconcile"] == "off"


def test_config_digest_ignores_what_differs_per_member_and_sees_the_rest(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root.pem"
    root.write_text("ROOT A\n")
    good = GOOD.replace('"/tmp/root.pem"', f'"{root}"')
    base = parse_config(tomllib.loads(good), environ={})
    digest = base.digest()
    assert len(digest) == 16
    per_member = (
        good.replace('name = "c1"', 'name = "c2"\npriority = 5')
        .replace('"/tmp/k1"', '"/elsewhere/k1"')  # secrets: neither path nor content
        .replace("[loop]", '[metrics]\nlisten = "0.0.0.0:9999"\n\n[loop]')
    )
    assert parse_config(tomllib.loads(per_member), environ={}).digest() == digest
    moved = tmp_path / "moved-root.pem"
    moved.write_text("ROOT A\n")  # the same CA file kept elsewhere: the same digest
    same = good.replace(f'"{root}"', f'"{moved}"')
    assert parse_config(tomllib.loads(same), environ={}).digest() == digest
    moved.write_text("ROOT B\n")  # another CA file: drift
    assert parse_config(tomllib.loads(same), environ={}).digest() != digest
    drifted = good.replace("batch_size = 50", "batch_size = 60")
    assert parse_config(tomllib.loads(drifted), environ={}).digest() != digest
    election = base.election_config()
    assert (election.config_digest, election.member_version) == (digest, __version__)
