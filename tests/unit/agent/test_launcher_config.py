"""The lab launcher's generated TOML is a valid connector configuration."""

from __future__ import annotations

import tomllib

from chaos.launch.connector import render_config
from connector.config import parse_config


def test_rendered_config_parses_and_keeps_every_setting() -> None:
    text = render_config(
        name="c2",
        cluster="lab",
        zk_hosts="127.0.0.1:1,127.0.0.1:2",
        service_url="http://127.0.0.1:3",
        cas={
            "primary": {
                "url": "http://127.0.0.1:4",
                "auth_key_file": "/run/k1",
                "certificate": "/run/c1.pem",
                "root": "/run/root.pem",
                "certdb": "/run/db1",
                "crl_url": 'http://127.0.0.1:5/primary.crl?x="y"',
                "timeout_s": 0.3,
            },
            "secondary": {
                "url": "http://127.0.0.1:6",
                "auth_key_file": "/run/k2",
                "certificate": "/run/c2.pem",
                "root": "/run/root.pem",
                "certdb_dsn": "postgresql://pfxha_reader@127.0.0.1:7/certdb_secondary",
                "certdb_password_file": "/run/certdb.password",
            },
        },
        templates={"user-auth": ["primary", "secondary"], "wifi": ["secondary"]},
        metrics_listen="127.0.0.1:9999",
        session_timeout=1.5,
        fast_path=False,
        loop={"poll_wait_s": 0.25, "workers": 2},
    )
    config = parse_config(tomllib.loads(text), {})
    assert config.connector.name == "c2"
    assert config.zookeeper.session_timeout == 1.5
    assert config.zookeeper.fast_path is False
    assert config.ca("primary").crl_url == 'http://127.0.0.1:5/primary.crl?x="y"'
    assert config.ca("primary").timeout_s == 0.3  # the lab's --ca-timeout
    assert config.ca("secondary").timeout_s == 2.0  # the connector's default
    assert config.ca("secondary").certdb is None
    assert config.ca("secondary").certdb_dsn == (
        "postgresql://pfxha_reader@127.0.0.1:7/certdb_secondary"
    )
    assert config.ca("secondary").certdb_password_file == "/run/certdb.password"
    assert config.templates == {"user-auth": ("primary", "secondary"), "wifi": ("secondary",)}
    assert config.metrics.host_port == ("127.0.0.1", 9999)
    assert (config.loop.poll_wait_s, config.loop.workers) == (0.25, 2)
