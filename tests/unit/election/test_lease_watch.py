"""A watch armed while standing by must not revoke a lease taken afterwards.

The crash takeover deletes the dead leader's /leader in the same transaction that
creates ours; the DELETED event of the standby-era watch arrives once we lead.
Found in the agent's integration runs: the new leader kept role ``leader`` with
``fresh_epoch() is None`` forever, so nobody worked.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from kazoo.protocol.states import EventType, KazooState, KeeperState, WatchedEvent

from election import ElectionConfig, Elector, Role


def _elector() -> Elector:
    config = ElectionConfig(hosts="127.0.0.1:1", cluster="lab", name="c1", fast_path=False)
    elector = Elector(config.validate())
    # No ZooKeeper here: the lease checks only look at the client's connection state.
    elector._client = SimpleNamespace(state=KazooState.CONNECTED)
    return elector


def _deleted(path: str) -> WatchedEvent:
    return WatchedEvent(EventType.DELETED, KeeperState.CONNECTED, path)


def test_standby_era_watch_does_not_revoke_the_new_lease() -> None:
    elector = _elector()
    elector._role = Role.STANDBY
    standby_watch = elector._lease_watch()
    elector._become_leader(7, time.monotonic(), "test")
    assert elector.fresh_epoch() == 7

    standby_watch(_deleted(elector.paths.leader))

    assert elector.fresh_epoch() == 7


def test_watch_armed_during_this_leadership_revokes_it() -> None:
    elector = _elector()
    elector._become_leader(8, time.monotonic(), "test")
    leader_watch = elector._lease_watch()
    assert elector.fresh_epoch() == 8

    leader_watch(_deleted(elector.paths.leader))

    assert elector.fresh_epoch() is None
    assert elector.role is Role.LEADER  # the loop steps down; acting stopped already


def test_watch_callable_is_reused_within_a_leadership() -> None:
    elector = _elector()
    elector._become_leader(9, time.monotonic(), "test")
    assert elector._lease_watch() is elector._lease_watch()
