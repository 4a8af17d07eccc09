"""StageClock: thread CPU per stage of a request, the rest as "other"."""

from __future__ import annotations

import pytest

from connector.agent.stages import OTHER, StageClock


class FakeCpu:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_each_stage_reports_its_own_cpu_and_the_rest_goes_to_other() -> None:
    cpu, seen = FakeCpu(), list[tuple[str, float]]()
    clock = StageClock(lambda stage, s: seen.append((stage, s)), now=cpu)
    cpu.now += 0.001  # before the first stage: other
    with clock("key"):
        cpu.now += 0.070
    cpu.now += 0.002  # between stages: other
    with clock("ca"):
        cpu.now += 0.003
    clock.close()
    clock.close()  # once only
    assert [stage for stage, _ in seen] == ["key", "ca", OTHER]
    assert dict(seen) == pytest.approx({"key": 0.070, "ca": 0.003, OTHER: 0.003})


def test_a_stage_that_raises_is_still_counted() -> None:
    cpu, seen = FakeCpu(), dict[str, float]()
    clock = StageClock(seen.__setitem__, now=cpu)

    def pack() -> None:
        with clock("pfx"):
            cpu.now += 0.004
            raise ValueError("cannot pack")

    with pytest.raises(ValueError, match="cannot pack"):
        pack()
    clock.close()
    assert seen == pytest.approx({"pfx": 0.004, OTHER: 0.0})
