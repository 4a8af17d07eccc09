"""Start-up validation names the setting and the rule it breaks."""

from __future__ import annotations

import pytest

from election import ConfigError, ElectionConfig


def cfg(**kw: object) -> ElectionConfig:
    base: dict[str, object] = {"hosts": "127.0.0.1:2181", "cluster": "lab", "name": "c1"}
    base.update(kw)
    return ElectionConfig(**base)  # type: ignore[arg-type]


def test_defaults_are_valid_and_derived_timings_nest() -> None:
    c = cfg().validate()
    assert c.heartbeat_s < c.lease_s <= c.session_timeout * 2 / 3


@pytest.mark.parametrize(
    ("kwargs", "setting", "rule"),
    [
        ({"hosts": ""}, "hosts", "at least one"),
        ({"hosts": "localhost"}, "hosts", "host:port"),
        ({"name": "bad/name"}, "name", "path component"),
        ({"cluster": ""}, "cluster", "path component"),
        ({"session_timeout": 0.05}, "session_timeout", "between 0.2 and 60"),
        ({"lease_validity": 0.9}, "lease_validity", "2/3 of session_timeout"),
        ({"heartbeat_interval": 0.6}, "heartbeat_interval", "below lease_validity"),
        ({"reconnect_max_delay": 0.5}, "reconnect_max_delay", "session_timeout/2"),
        ({"connection_timeout": 0}, "connection_timeout", "positive"),
        ({"liveness_host": "not an ip"}, "liveness_host", "IP address"),
        ({"auth_digest": ("us:er", "pw")}, "auth_digest", "no ':'"),
        ({"auth_digest": ("user", "")}, "auth_digest", "password"),
    ],
)
def test_broken_rules_name_the_setting(kwargs: dict[str, object], setting: str, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule) as info:
        cfg(**kwargs).validate()
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}=")


def test_the_elector_validates_at_construction() -> None:
    from election import Elector

    with pytest.raises(ConfigError, match="session_timeout"):
        Elector(cfg(session_timeout=100))
