"""A leader process killed with SIGKILL: fast path (liveness socket) versus session expiry."""

from __future__ import annotations

import signal
import time

import pytest

from election import read_history
from tests.integration.election.support import (
    ClientFactory,
    Members,
    kill,
    leader_of,
    wait_armed,
    wait_leader_in_zk,
    wait_line,
)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "session-timeout"])
def test_killed_leader_is_replaced_with_a_higher_epoch(
    members: Members, zk_client: ClientFactory, fast_path: bool
) -> None:
    extra = () if fast_path else ("--no-fast-path",)
    for name in ("c1", "c2", "c3"):
        members.start(name, *extra)
    client = zk_client()
    wait_line(client, members.cluster, 3)
    old_name, old_epoch = wait_leader_in_zk(client, members.cluster)
    if fast_path:
        # The line can form before a standby's probe has connected to the new leader's
        # liveness socket; a kill in between is noticed by the session timeout only.
        wait_armed(client, members.cluster, {"c1", "c2", "c3"} - {old_name})
    killed_at = time.monotonic()
    kill(members.procs[old_name], signal.SIGKILL)
    new_name, new_epoch = wait_leader_in_zk(
        client, members.cluster, accept=lambda leader: leader[0] != old_name
    )
    took = time.monotonic() - killed_at
    assert new_epoch > old_epoch
    # Which path took over is in the successor's history entry, not in how long it
    # took (the benchmark measures that; a wall-clock bound on a loaded CI machine
    # would fail by chance).
    (entry,) = [e for e in read_history(client, members.cluster) if e.epoch == new_epoch]
    closed = f"liveness socket of leader {old_name} (epoch {old_epoch}) closed"
    if fast_path:
        assert closed in entry.reason, entry.reason
    else:
        assert "liveness socket" not in entry.reason, entry.reason
        # The session expires 1 s after the leader's last contact, which precedes the
        # kill by at most one heartbeat or kazoo ping (about 0.33 s): no takeover can
        # come sooner, however fast the machine.
        assert took > 0.5, f"takeover after {took:.3f}s, before the session could expire"
    # The new leader is stable and the dead one's nodes are gone once its session ends.
    wait_line(client, members.cluster, 2)
    assert leader_of(client, members.cluster) == (new_name, new_epoch)
