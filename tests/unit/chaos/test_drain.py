"""The drain waits while the backlog shrinks, and gives up once it stops moving."""

from __future__ import annotations

from chaos.drill.drain import drain


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_backlog_that_keeps_shrinking_drains_past_one_timeout() -> None:
    time = FakeTime()
    backlog = [300]

    def left() -> int:
        backlog[0] = max(0, 300 - int(time.now * 5))  # 5 done a second: 60 s in all
        return backlog[0]

    took = drain(left, timeout=10.0, clock=time.clock, sleep=time.sleep)
    assert backlog[0] == 0
    assert 59.0 <= took <= 61.0


def test_a_backlog_that_stops_moving_ends_the_drain_one_timeout_later() -> None:
    time = FakeTime()

    def left() -> int:
        return max(40, 100 - int(time.now * 10))  # stuck at 40 after 6 s

    took = drain(left, timeout=10.0, clock=time.clock, sleep=time.sleep)
    assert 15.5 <= took <= 17.0


def test_the_drain_is_capped() -> None:
    time = FakeTime()
    took = drain(
        lambda: 10**9 - int(time.now * 100), timeout=1.0, cap=3, clock=time.clock, sleep=time.sleep
    )
    assert took <= 3.5
