"""Anything written into the cluster's nodes never crashes or wedges the election.

A holder of ZooKeeper write access keeps a denial of service (docs/security.md);
what it must not get is a cluster whose electors crash, stay suspended, or take
an epoch the service refuses forever. Real ZooKeeper, in-process electors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.exceptions import NoNodeError

from chaos.launch import wait_for
from election import ClusterPaths
from election._epoch import MAX_EPOCH, parse_epoch
from tests.integration.election.support import ClientFactory, Pool

_NASTY = [
    b"abc",
    b"-1",
    str(2**62).encode(),
    b'{"name": "c9", "epoch": 1e400}',
    b"[" * 3000,
    b'{"to": 5, "requested_at": []}',
    b'{"name": "c1", "epoch": 3, "liveness": {"a": 1}}',
]


class _Events(logging.Handler):
    """Event ids the electors logged (kept across hypothesis examples)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        event_id = getattr(record, "event_id", None)
        if isinstance(event_id, int):
            self.ids.append(event_id)


@pytest.fixture
def events() -> Iterator[_Events]:
    handler = _Events()
    logger = logging.getLogger("pfxha.election")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _one_sane_leader(pool: Pool) -> str:
    leader = pool.wait_leader(timeout=10)
    epoch = pool.electors[leader].fresh_epoch()
    assert epoch is not None
    assert 0 < epoch <= MAX_EPOCH
    return leader


# Hypothesis warns when the global ``random`` state moves while it draws an
# argument. Here kazoo's client threads (retry jitter, host order) and the
# pool's electors draw from it in the background; no strategy of ours does.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@settings(
    max_examples=14,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    target=st.sampled_from(["epoch", "leader", "switchover", "member", "election"]),
    content=st.one_of(st.sampled_from(_NASTY), st.binary(max_size=48)),
)
def test_garbage_in_any_node_leaves_one_leader_with_a_sane_epoch(
    pool: Pool, zk_client: ClientFactory, events: _Events, target: str, content: bytes
) -> None:
    if not pool.electors:
        pool.add("c1")
        pool.add("c2")
    client = zk_client()
    paths = ClusterPaths(pool.cluster)
    leader = _one_sane_leader(pool)
    if target == "epoch":
        client.set(paths.epoch, content)
        # Only a takeover reads the counter: make one.
        assert pool.electors[leader].release("test: forged /epoch")
    elif target == "leader":
        client.set(paths.leader, content)
    elif target == "switchover":
        client.create(paths.switchover, content, makepath=True)
    elif target == "member":
        client.set(paths.member(leader), content)
    else:
        client.create(f"{paths.election}/not-a-candidate-", content, sequence=True)

    _one_sane_leader(pool)
    if target == "epoch":
        value, problem = parse_epoch(client.get(paths.epoch)[0])
        assert problem is None, problem  # the takeover wrote a good value over it
        assert value is not None
    if target == "switchover":
        wait_for(
            lambda: client.exists(paths.switchover) is None, timeout=10, what="the request handled"
        )
    assert 5099 not in events.ids, "an election step crashed"


def test_a_persistent_leader_node_is_cleared_as_forged(
    pool: Pool, zk_client: ClientFactory, events: _Events
) -> None:
    client = zk_client()
    paths = ClusterPaths(pool.cluster)
    client.ensure_path(paths.election)
    forged = b'{"name": "intruder", "epoch": 999, "since": "now"}'
    client.create(paths.leader, forged, makepath=True)  # persistent: no member does that
    pool.add("c1")
    pool.add("c2")

    _one_sane_leader(pool)
    raw, stat = client.get(paths.leader)
    assert stat.ephemeralOwner != 0
    assert b"intruder" not in raw
    assert 5117 in events.ids
    # ... and the observers hear of it (the connector turns it into a metric and an alert).
    tampered = [v for r in pool.recorders.values() for _, k, v in r.events if k == "tampered"]
    assert "leader" in tampered  # (and "epoch": the forged node named epoch 999)


def test_garbled_leader_node_of_a_live_leader_is_rewritten_under_a_new_epoch(
    pool: Pool, zk_client: ClientFactory
) -> None:
    pool.add("c1")
    pool.add("c2")
    client = zk_client()
    paths = ClusterPaths(pool.cluster)
    leader = _one_sane_leader(pool)
    before = pool.electors[leader].fresh_epoch()
    assert before is not None
    client.set(paths.leader, b"\x00garbage")

    def rewritten() -> bool:
        try:
            raw, _ = client.get(paths.leader)
        except NoNodeError:
            return False
        return raw.startswith(b"{")

    wait_for(rewritten, timeout=10, what="/leader rewritten by its owner")
    written = json.loads(client.get(paths.leader)[0])
    assert written["name"] == leader  # no leadership change for it
    assert written["epoch"] > before
    # The elector adopts the new epoch just after its transaction commits, so the
    # rewritten node can be seen a moment before fresh_epoch() reports it.
    wait_for(
        lambda: pool.electors[leader].fresh_epoch() == written["epoch"],
        timeout=10,
        what="the leader holding the epoch it wrote",
    )
    assert pool.wait_leader(timeout=10) == leader
