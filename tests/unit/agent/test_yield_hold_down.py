"""A leader that handed the lease over holds down and says why at once, not a turn later."""

from __future__ import annotations

from typing import Any, cast

from connector.agent.executor import ExecutorDeps
from connector.agent.loop import Agent
from connector.config import LoopSettings


class FakeElector:
    """Records what the agent tells the elector (no ZooKeeper)."""

    def __init__(self) -> None:
        self.withheld: list[str | None] = []
        self.published: list[dict[str, str]] = []

    def withhold(self, reason: str | None) -> None:
        self.withheld.append(reason)

    def publish_reach(self, report: dict[str, str], refresh_s: float) -> bool:
        self.published.append(dict(report))
        return True


def _agent(elector: FakeElector, now: list[float]) -> Agent:
    deps = ExecutorDeps(
        name="c1",
        service=cast(Any, None),
        issuer=cast(Any, None),
        pki=cast(Any, None),
        lease=cast(Any, None),
        ca_errors=(),
        is_retryable=lambda _: False,
        clock=lambda: now[0],
    )
    return Agent(
        deps=deps, elector=elector, templates={}, loop=LoopSettings(), clock=lambda: now[0]
    )


def test_a_yield_withholds_from_the_line_and_publishes_reach_at_once() -> None:
    now = [100.0]
    elector = FakeElector()
    agent = _agent(elector, now)
    before = agent.state.last_yield
    agent.state.last_yield = (now[0], "service")  # what the executor records on a hand-over

    agent._after_yield(before)

    assert elector.withheld == ["handed the lease over (service unreachable): hold-down"]
    assert len(elector.published) == 1


def test_a_refused_hand_over_changes_nothing() -> None:
    elector = FakeElector()
    agent = _agent(elector, [100.0])
    agent._after_yield(agent.state.last_yield)  # no yield recorded: refused
    assert elector.withheld == []
    assert elector.published == []


def test_a_changed_probe_verdict_is_published_at_once_from_the_probers_thread() -> None:
    # The loop may be held in a call that fails (a heartbeat into a blackhole): the
    # others must not go on reading our last "ok" until that call times out.
    now = [100.0]
    elector = FakeElector()
    agent = _agent(elector, now)
    agent.reach.record("service", ok=True)
    agent.publish_reach()
    agent.reach.record("service", ok=False)  # the prober's verdict, not the loop's
    agent.reach_changed()
    assert elector.published[-1] == {"service": "failed"}
    assert len(elector.published) == 2
