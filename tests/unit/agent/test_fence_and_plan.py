"""The fence every side effect passes, and the pure orphan plan of reconciliation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from connector.agent.ports import Fence, LeaseLost
from connector.agent.reconcile import plan_orphans


class Lease:
    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch
        self.released: list[str] = []

    def fresh_epoch(self) -> int | None:
        return self.epoch

    def release(self, reason: str) -> None:
        self.released.append(reason)

    def leave(self, reason: str) -> None:
        self.released.append(reason)


def test_fence_passes_only_the_armed_fresh_epoch() -> None:
    lease = Lease(7)
    fence = Fence(lease)
    fence.arm(7)
    assert fence.epoch() == 7
    lease.epoch = None  # lease no longer fresh (suspended)
    with pytest.raises(LeaseLost, match="no fresh lease"):
        fence.epoch()
    lease.epoch = 8  # re-elected meanwhile: work in hand belongs to epoch 7
    with pytest.raises(LeaseLost, match="moved from 7 to 8"):
        fence.epoch()


def test_tripped_fence_stops_every_worker_until_rearmed() -> None:
    fence = Fence(Lease(7))
    fence.arm(7)
    fence.trip()
    with pytest.raises(LeaseLost, match="fenced"):
        fence.epoch()
    fence.arm(7)
    assert fence.epoch() == 7


@dataclass(frozen=True)
class Found:
    serial: int
    ca_name: str
    status: str = "good"

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"


def test_plan_revokes_every_unrevoked_certificate_of_a_stale_intent() -> None:
    found = [Found(1, "primary"), Found(2, "secondary", "revoked"), Found(3, "secondary")]
    plan = plan_orphans("r1", 4, found)
    assert [(o.serial, o.ca_name) for o in plan] == [(1, "primary"), (3, "secondary")]
    assert all(o.request_id == "r1" and o.intent_epoch == 4 for o in plan)


def test_plan_for_an_intent_the_ca_never_saw_is_empty() -> None:
    assert plan_orphans("r1", 4, []) == []


def test_dangling_work_of_an_older_epoch_is_left_to_reconciliation() -> None:
    from connector.agent.dangling import Dangling, DanglingWork

    work = DanglingWork()
    work.add(Dangling("r1", epoch=6, public_key_pem="pem"))
    work.add(Dangling("r2", epoch=7))
    assert len(work) == 2
    assert [d.request_id for d in work.take(epoch=7)] == ["r2"]
    assert len(work) == 0


@pytest.mark.parametrize(
    ("raw", "word"),
    [("closed", "closed"), ("half-open", "half_open"), ("HALF_OPEN", "half_open"), ("?", "open")],
)
def test_breaker_states_from_the_router(raw: str, word: str) -> None:
    from connector.agent.loop import ca_state_word

    assert ca_state_word(raw) == word
