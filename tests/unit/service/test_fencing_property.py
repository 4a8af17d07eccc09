"""Monotonic fencing, as a property over random action sequences at the store/gate layer.

Registers with near, far, absurd and malformed epochs, admin revocations and
epoch acceptances, restarts (the database closed and reopened), polls with
stale or current epochs, a clock that jumps both ways. After every step:

* the highest epoch seen never decreases (also across restarts);
* a call whose epoch is below the highest seen is refused with 409;
* nothing from a revoked connector is accepted (403);
* an epoch outside the bounds never moves the highest;
* the forger bound: the highest epoch never rose by more than the advance
  budget's capacity, plus its refill over the time that passed, plus the
  jumps an admin accepted.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chaos.service.db import Database
from chaos.service.fencing import Gate
from chaos.service.keys import ServiceKeys
from chaos.service.rules import MAX_EPOCH, AdvancePolicy
from chaos.service.store import ApiError, Store, StoreSettings

NAMES = ("a", "b", "c", "forger")
POLICY = AdvancePolicy(capacity=1_000, refill_per_s=2.0)
ABSURD = (MAX_EPOCH + 1, 2**62, 4611686018427387904, 2**63, 10**30, -1, -(2**63))

_KEYS: list[ServiceKeys] = []


def status_of(call: Callable[[], Any]) -> int:
    """200 when ``call`` is accepted, else the status it was refused with."""
    try:
        call()
    except ApiError as exc:
        return exc.status
    return 200


def _keys() -> ServiceKeys:
    """The KRA and device CA key pairs: made once (RSA), shared by every example."""
    if not _KEYS:
        _KEYS.append(ServiceKeys.load_or_create(Path(tempfile.mkdtemp(prefix="fence-keys-"))))
    return _KEYS[0]


class FencingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="fence-prop-"))
        self.now = 1_700_000_000.0
        self.forward_s = 0.0  # every forward move of the clock, summed
        self.open()
        self.start = self.highest()[0]
        self.last_highest = self.start
        self.revoked: set[str] = set()
        self.accepted_jumps = 0
        self.last_advance_at = self.now - POLICY.capacity / POLICY.refill_per_s  # budget full

    # -- plumbing ------------------------------------------------------------------

    def open(self) -> None:
        self.store = Store(
            Database(self.directory / "service.db"),
            _keys(),
            settings=StoreSettings(advance=POLICY),
            clock=lambda: self.now,
        )
        self.gate = Gate(self.store)

    def highest(self) -> tuple[int, str | None]:
        with self.store.db.transaction() as tx:
            return self.gate.highest(tx)

    def teardown(self) -> None:
        self.store.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- actions -------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        delta=st.one_of(st.integers(-3, 6), st.integers(7, 3_000)),
    )
    def register_near(self, name: str, delta: int) -> None:
        highest, _ = self.highest()
        self.register(name, max(1, highest + delta))

    @rule(name=st.sampled_from(NAMES), epoch=st.sampled_from(ABSURD))
    def register_absurd(self, name: str, epoch: int) -> None:
        before = self.highest()
        with pytest.raises(ApiError) as refused:
            self.gate.register(name, epoch)
        assert refused.value.status == (403 if name in self.revoked else 422)
        assert self.highest() == before

    @rule(name=st.sampled_from(NAMES))
    def register_a_bool(self, name: str) -> None:
        before = self.highest()
        with pytest.raises(ApiError) as refused:
            self.gate.register(name, True)
        assert refused.value.status in (403, 422)
        assert self.highest() == before

    def register(self, name: str, epoch: int) -> None:
        before, holder = self.highest()
        elapsed = self.now - self.last_advance_at
        status = status_of(lambda: self.gate.register(name, epoch))
        if status != 200:
            assert self.highest() == (before, holder)
            if name in self.revoked:
                assert status == 403
            elif epoch < before or (epoch == before and holder != name):
                assert status == 409
            else:
                assert status in (403, 429)
                # Only a jump beyond what surely refilled since the last advance.
                assert epoch - before > min(POLICY.capacity, elapsed * POLICY.refill_per_s)
            return
        assert name not in self.revoked
        assert epoch >= before
        assert self.highest() == (epoch, name)
        if epoch > before:
            self.last_advance_at = self.now

    @rule(name=st.sampled_from(NAMES), delta=st.integers(-3, 2))
    def poll(self, name: str, delta: int) -> None:
        highest, holder = self.highest()
        epoch = max(1, highest + delta)
        answers: list[str] = []
        status = status_of(
            lambda: answers.append(self.gate.fenced("requests/poll", name, epoch, lambda tx: "w"))
        )
        if name in self.revoked:
            assert status == 403
        elif epoch < highest:
            assert status == 409
        if status != 200:
            return
        assert answers == ["w"]
        assert name not in self.revoked
        assert (epoch, name) == (highest, holder)

    @rule(name=st.sampled_from(NAMES))
    def revoke(self, name: str) -> None:
        before = self.highest()
        status = status_of(lambda: self.gate.revoke(name, "test"))
        assert status in (200, 404)  # 404: never seen
        if status == 200:
            self.revoked.add(name)
        assert self.highest() == before

    @rule(name=st.sampled_from(NAMES), delta=st.integers(-2, 50_000))
    def admin_accepts(self, name: str, delta: int) -> None:
        highest, _ = self.highest()
        epoch = highest + delta
        status = status_of(lambda: self.gate.accept_epoch(name, epoch, "test"))
        assert status in (200, 409, 422)
        if status != 200:
            return
        assert delta > 0
        assert name not in self.revoked
        self.accepted_jumps += delta
        self.register(name, epoch)

    @rule()
    def restart(self) -> None:
        before = self.highest()
        self.store.db.close()
        self.open()
        assert self.highest() == before

    @rule(seconds=st.one_of(st.floats(0, 5_000), st.floats(-3_000, 0)))
    def clock_moves(self, seconds: float) -> None:
        self.now += seconds
        self.forward_s += max(0.0, seconds)

    @precondition(lambda self: self.last_highest > 0)
    @rule()
    def raw_sql_cannot_lower_it(self) -> None:
        db = self.store.db
        with pytest.raises(sqlite3.IntegrityError, match="never decreases"), db.transaction() as tx:
            tx.execute("UPDATE fence SET highest_epoch = highest_epoch - 1")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"), db.transaction() as tx:
            tx.execute("DELETE FROM fence")

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def highest_never_decreases(self) -> None:
        highest, _ = self.highest()
        assert highest >= self.last_highest
        assert highest <= MAX_EPOCH
        self.last_highest = highest

    @invariant()
    def forger_bound(self) -> None:
        rise = self.last_highest - self.start
        assert rise <= (
            POLICY.capacity + POLICY.refill_per_s * self.forward_s + self.accepted_jumps
        )


FencingMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_fencing_is_monotonic_over_random_actions = FencingMachine.TestCase
