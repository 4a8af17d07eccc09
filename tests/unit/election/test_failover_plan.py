"""Every rule of the manual failover plan, without a server."""

from __future__ import annotations

from dataclasses import replace

from election import ClusterStatus, LeaderInfo, PauseInfo
from election._failover import FailoverKind, plan_failover
from election._model import Candidate


def line(*names: str) -> tuple[Candidate, ...]:
    parsed = (Candidate.parse(f"m-{n}-p0-{i:010d}") for i, n in enumerate(names))
    return tuple(c for c in parsed if c is not None)


STATUS = ClusterStatus(
    "lab", (), LeaderInfo("c1", 7, "now"), 7, line=line("c1", "c2", "nofail-free")
)


def test_a_live_leader_is_deposed_only_with_force() -> None:
    plan = plan_failover(STATUS, "c2", force=False)
    assert plan.kind is FailoverKind.REFUSE
    assert "pfxha switchover --to c2" in plan.reason
    assert "--force" in plan.reason
    forced = plan_failover(STATUS, "c2", force=True)
    assert forced.kind is FailoverKind.FORCE
    assert "deposing c1 (epoch 7)" in forced.reason


def test_without_a_leader_the_target_takes_the_free_lease() -> None:
    plan = plan_failover(replace(STATUS, leader=None), "c2", force=False)
    assert plan.kind is FailoverKind.REQUEST


def test_refusals_name_the_reason() -> None:
    assert "already leads" in plan_failover(STATUS, "c1", force=True).reason
    absent = plan_failover(STATUS, "c9", force=True)
    assert absent.kind is FailoverKind.REFUSE
    assert "eligible: c2, nofail-free" in absent.reason
    paused = replace(STATUS, paused=PauseInfo("now"))
    assert "paused" in plan_failover(paused, "c2", force=True).reason
