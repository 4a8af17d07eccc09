"""A leader's heartbeat between full reads: two nodes confirmed, everything re-read on a watch."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chaos.launch import wait_for
from election import Elector
from tests.integration.election.support import ClientFactory, Pool, wait_line


def count_reads(elector: Elector, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the elector's full reads and lean checks (real ZooKeeper calls underneath)."""
    nodes = elector._nodes
    assert nodes is not None
    calls: Counter[str] = Counter()
    read, unchanged = nodes.read, nodes.unchanged

    def counted_read(*args: Any, **kwargs: Any) -> Any:
        calls["read"] += 1
        return read(*args, **kwargs)

    def counted_unchanged(*args: Any, **kwargs: Any) -> bool:
        calls["unchanged"] += 1
        return unchanged(*args, **kwargs)

    monkeypatch.setattr(nodes, "read", counted_read)
    monkeypatch.setattr(nodes, "unchanged", counted_unchanged)
    return calls


def line_seen_by(elector: Elector) -> set[str]:
    last = elector._last_snapshot
    return set() if last is None else {c.name for c in last[1].line}


def test_a_quiet_leader_confirms_its_lease_without_rereading_the_election(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("c1", "c2"):
        pool.add(name)
    elector = pool.electors[pool.wait_leader()]
    calls = count_reads(elector, monkeypatch)
    # Five heartbeats per full read at the default timings; lean ones keep the lease fresh.
    wait_for(lambda: calls["unchanged"] >= 8, timeout=10, what="lean heartbeats")
    assert calls["read"] < calls["unchanged"]
    assert elector.fresh_epoch() is not None


def test_a_watch_makes_the_next_heartbeat_read_everything(
    pool: Pool, monkeypatch: pytest.MonkeyPatch, zk_client: ClientFactory
) -> None:
    pool.add("c1")
    elector = pool.electors[pool.wait_leader()]
    # No periodic full read during the test: only the watch can show the newcomer.
    monkeypatch.setattr(elector._views, "full_every_s", 3600.0)
    calls = count_reads(elector, monkeypatch)
    wait_for(lambda: calls["unchanged"] >= 2, timeout=10, what="lean heartbeats")
    reads_before = calls["read"]
    pool.add("c2")
    wait_line(zk_client(), pool.cluster, 2)
    wait_for(lambda: line_seen_by(elector) == {"c1", "c2"}, timeout=3, what="c2 in the view")
    assert calls["read"] > reads_before
    assert elector.fresh_epoch() is not None
