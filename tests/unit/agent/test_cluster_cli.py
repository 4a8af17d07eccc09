"""``pfxha show-config``: which members differ from the rest, and how."""

from __future__ import annotations

from connector.cli._cluster import config_drift
from election import MemberInfo


def member(name: str, digest: str = "aaaa", version: str = "0.1.0") -> MemberInfo:
    return MemberInfo(name, version=version, config_digest=digest)


def test_agreeing_members_are_not_named() -> None:
    assert config_drift([member("c1"), member("c2"), member("c3")]) == {}
    assert config_drift([]) == {}


def test_the_odd_one_out_is_named_with_what_most_run() -> None:
    drift = config_drift([member("c1"), member("c2", digest="bbbb"), member("c3")])
    assert drift == {"c2": "configuration bbbb, most members aaaa"}
    upgraded = config_drift([member("c1", version="0.2.0"), member("c2"), member("c3")])
    assert upgraded == {"c1": "version 0.2.0, most members 0.1.0"}


def test_a_tie_names_everyone_and_an_old_member_says_so() -> None:
    drift = config_drift([member("c1"), member("c2", digest="bbbb")])
    assert drift == {"c1": "configuration aaaa", "c2": "configuration bbbb"}
    old = config_drift([member("c1"), member("c2"), member("c3", digest="", version="")])
    assert old == {"c3": "publishes no configuration (an older version)"}
