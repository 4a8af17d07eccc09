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


@pytest.mark.parametrize(
    ("kwargs", "setting", "rule"),
    [
        ({"liveness_advertise": "bad name!"}, "liveness_advertise", "DNS name"),
        ({"liveness_advertise": "pfx1.example"}, "liveness_advertise", "also set liveness_host"),
        ({"liveness_advertise": "0.0.0.0"}, "liveness_advertise", "not a wildcard"),
        (
            {"liveness_host": "10.0.0.5", "liveness_advertise": "fd00::5"},
            "liveness_advertise",
            "same IP version",
        ),
        ({"liveness_port": 70000}, "liveness_port", "0 .any free port. to 65535"),
        ({"liveness_port": -1}, "liveness_port", "65535"),
    ],
)
def test_broken_liveness_settings_name_the_setting(
    kwargs: dict[str, object], setting: str, rule: str
) -> None:
    with pytest.raises(ConfigError, match=rule) as info:
        cfg(**kwargs).validate()
    assert info.value.setting == setting


def test_liveness_settings_are_not_checked_without_the_fast_path() -> None:
    cfg(fast_path=False, liveness_host="not an ip", liveness_port=70000).validate()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ("10.9.9.9", "10.9.9.9")),  # default: our side of the route to ZooKeeper
        ({"liveness_host": "0.0.0.0"}, ("0.0.0.0", "10.9.9.9")),
        ({"liveness_host": "10.0.0.5"}, ("10.0.0.5", "10.0.0.5")),
        ({"liveness_advertise": "10.1.2.3"}, ("10.1.2.3", "10.1.2.3")),
        (
            {"liveness_host": "0.0.0.0", "liveness_advertise": "pfx1.example"},
            ("0.0.0.0", "pfx1.example"),
        ),
    ],
)
def test_liveness_addresses_default_to_the_route_to_zookeeper(
    kwargs: dict[str, object], expected: tuple[str, str]
) -> None:
    config = cfg(**kwargs).validate()
    assert config.liveness_addresses(lambda: "10.9.9.9") == expected


def test_the_route_is_only_looked_up_when_needed() -> None:
    def no_route() -> str:
        raise AssertionError("route looked up although the address was configured")

    assert cfg(liveness_host="10.0.0.5").liveness_addresses(no_route) == ("10.0.0.5",) * 2
