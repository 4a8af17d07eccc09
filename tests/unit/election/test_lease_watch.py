"""A watch armed while standing by must not revoke a lease taken afterwards.

The crash takeover deletes the dead leader's /leader in the same transaction that
creates ours; the DELETED event of the standby-era watch arrives once we lead.
Found in the agent's integration runs: the new leader kept role ``leader`` with
``fresh_epoch() is None`` forever, so nobody worked.
"""

from __future__ import annotations

from kazoo.protocol.states import EventType, KeeperState, WatchedEvent

from election._lease import Lease


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _deleted() -> WatchedEvent:
    return WatchedEvent(EventType.DELETED, KeeperState.CONNECTED, "/pfxha/lab/leader")


def _lease() -> tuple[Lease, _Clock, list[WatchedEvent]]:
    clock = _Clock()
    return Lease(validity_s=0.6, clock=clock), clock, []


def test_standby_era_watch_does_not_revoke_the_new_lease() -> None:
    lease, clock, seen = _lease()
    standby_watch = lease.watcher(seen.append)
    lease.grant(7, confirmed_at=clock.now)

    standby_watch(_deleted())

    assert lease.fresh_epoch() == 7
    assert len(seen) == 1  # the loop is still woken


def test_watch_armed_during_this_leadership_revokes_it() -> None:
    lease, clock, seen = _lease()
    lease.grant(8, confirmed_at=clock.now)
    leader_watch = lease.watcher(seen.append)

    leader_watch(_deleted())

    assert lease.fresh_epoch() is None
    assert lease.epoch == 8  # the loop steps down; acting stopped already


def test_watch_callable_is_reused_within_a_leadership() -> None:
    lease, clock, seen = _lease()
    lease.grant(9, confirmed_at=clock.now)
    assert lease.watcher(seen.append) is lease.watcher(seen.append)


def test_a_lease_goes_stale_after_its_validity_without_a_confirmation() -> None:
    lease, clock, _ = _lease()
    lease.grant(10, confirmed_at=clock.now)
    clock.now += 0.59
    assert lease.fresh_epoch() == 10
    clock.now += 0.02
    assert lease.fresh_epoch() is None
    lease.confirm(clock.now)
    assert lease.fresh_epoch() == 10
    lease.end()
    assert lease.fresh_epoch() is None
    assert lease.epoch is None
