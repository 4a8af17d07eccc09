"""Revocations never hold up issuance: open circuits are put off, the rest run aside."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from connector.agent.decide import Action, Decision
from connector.agent.executor import AgentState, Executor, ExecutorDeps
from connector.agent.ports import Pki
from connector.service_client import Polled, RevocationTask


class CADownError(Exception):
    pass


class FakeLease:
    def fresh_epoch(self) -> int | None:
        return 7

    def release(self, reason: str) -> None:
        pass

    def leave(self, reason: str) -> None:
        pass


class FakeService:
    def __init__(self, tasks: list[RevocationTask]) -> None:
        self.tasks = tasks
        self.confirmed: list[str] = []

    def poll_revocations(self, name: str, epoch: int, max_items: int) -> list[RevocationTask]:
        return list(self.tasks)

    def confirm_revocation(self, name: str, epoch: int, revocation_id: str) -> None:
        self.confirmed.append(revocation_id)


class FakeIssuer:
    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.calls: list[tuple[int, str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def issue(self, csr: Any, template: str, request_id: str, deadline: float) -> Any:
        raise AssertionError("not called")

    def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
        self.calls.append((serial, issuer_ca))
        self.entered.set()
        assert self.release.wait(10)

    def find(self, public_key: Any) -> Sequence[Any]:
        return []

    def find_many(self, public_keys: Sequence[Any]) -> Sequence[Sequence[Any]]:
        return [[] for _ in public_keys]

    def ca_states(self) -> Mapping[str, str]:
        return self.states


class PollingService(FakeService):
    """Request polls that find no work and say how many revocations wait."""

    def __init__(self, waiting: int | None) -> None:
        super().__init__([])
        self.waiting = waiting

    def poll_work(self, name: str, epoch: int, max_items: int, wait_s: float, **_: Any) -> Polled:
        return Polled([], self.waiting)


def _executor(
    service: FakeService, issuer: FakeIssuer, *, clock: Callable[[], float] | None = None
) -> Executor:
    def unused(*_: Any) -> Any:
        raise AssertionError("not called")

    deps = ExecutorDeps(
        name="c1",
        service=service,
        issuer=issuer,
        pki=Pki(new_key=unused, build_csr=unused, pack_pfx=unused, seal=unused),
        lease=FakeLease(),
        ca_errors=(CADownError,),
        is_retryable=lambda exc: True,
        clock=clock or time.monotonic,
    )
    return Executor(deps, AgentState())


def _task(n: int, ca: str) -> RevocationTask:
    return RevocationTask(f"rev-{n}", n, ca, "superseded", f"req-{n}")


def test_revocations_at_an_open_circuit_are_put_off_without_a_call() -> None:
    service = FakeService([_task(1, "primary")])
    issuer = FakeIssuer({"primary": "open", "secondary": "closed"})
    executor = _executor(service, issuer)
    try:
        executor.execute(Decision(Action.REVOKE, "test", epoch=7))
        assert issuer.calls == []
        assert service.confirmed == []
        assert executor.state.last_revocation_poll_at is not None
    finally:
        executor.close()


def test_revoking_runs_beside_the_loop_and_confirms() -> None:
    service = FakeService([_task(1, "primary"), _task(2, "secondary")])
    issuer = FakeIssuer({"primary": "open", "secondary": "closed"})
    executor = _executor(service, issuer)
    progressed = threading.Event()
    executor.on_progress = progressed.set
    try:
        executor.execute(Decision(Action.REVOKE, "test", epoch=7))
        # The loop has its turn back while the CA call is still under way.
        assert issuer.entered.wait(10)
        assert service.confirmed == []
        # A second pass while the first works polls nothing twice.
        executor.execute(Decision(Action.REVOKE, "test", epoch=7))
        issuer.release.set()
        assert progressed.wait(10)
        assert issuer.calls == [(2, "secondary")]
        assert service.confirmed == ["rev-2"]
        assert executor.state.rejected_epoch is None
    finally:
        issuer.release.set()
        executor.close()


@pytest.mark.parametrize(("waiting", "stands_in"), [(0, True), (3, False), (None, False)])
def test_a_request_poll_saying_no_revocation_waits_stands_in_for_a_revocation_poll(
    waiting: int | None, stands_in: bool
) -> None:
    now = [100.0]
    executor = _executor(PollingService(waiting), FakeIssuer({}), clock=lambda: now[0])
    executor.state.last_revocation_poll_at = 99.0
    try:
        executor.execute(Decision(Action.ISSUE, "test", epoch=7))
        # Only "none wait" answers the question; a count or no word leaves it due.
        assert executor.state.last_revocation_poll_at == (100.0 if stands_in else 99.0)
    finally:
        executor.close()


def test_a_request_poll_never_moves_the_last_revocation_poll_back() -> None:
    executor = _executor(PollingService(0), FakeIssuer({}), clock=lambda: 100.0)
    executor.state.last_revocation_poll_at = 101.0  # a revocation poll answered since
    try:
        executor.execute(Decision(Action.ISSUE, "test", epoch=7))
        assert executor.state.last_revocation_poll_at == 101.0
    finally:
        executor.close()
