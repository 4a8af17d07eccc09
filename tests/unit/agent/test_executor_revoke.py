"""Revocations never hold up issuance: open circuits are put off, the rest run aside."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from connector.agent.decide import Action, Decision
from connector.agent.executor import AgentState, Executor, ExecutorDeps
from connector.agent.ports import Pki
from connector.service_client import RevocationTask


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


def _executor(service: FakeService, issuer: FakeIssuer) -> Executor:
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
