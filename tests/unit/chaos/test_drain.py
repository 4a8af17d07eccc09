"""The drain waits while the backlog shrinks, and gives up once it stops moving; settle waits
for late certificates to be revoked, up to its timeout."""

from __future__ import annotations

from chaos.drill.drain import drain, settle


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


def test_settle_reads_again_until_the_late_certificate_is_revoked() -> None:
    time = FakeTime()
    reads: list[float] = []

    def read() -> int:
        reads.append(time.now)
        return 1 if time.now < 3.0 else 0  # the leader revokes it 3 s on

    state, waited = settle(
        read, lambda extra: extra > 0, timeout=45.0, clock=time.clock, sleep=time.sleep
    )
    assert state == 0
    assert waited == 3.0
    assert reads[-1] == 3.0  # it stopped as soon as the state settled


def test_settle_gives_a_duplicate_that_stays_back_after_the_timeout() -> None:
    time = FakeTime()
    state, waited = settle(
        lambda: 1, lambda extra: extra > 0, timeout=10.0, clock=time.clock, sleep=time.sleep
    )
    assert state == 1  # still a duplicate: the checker reports it
    assert 10.0 <= waited <= 10.5


def test_settle_does_not_wait_when_nothing_is_left() -> None:
    time = FakeTime()
    assert settle(
        lambda: 0, lambda extra: extra > 0, timeout=10.0, clock=time.clock, sleep=time.sleep
    ) == (0, 0.0)
