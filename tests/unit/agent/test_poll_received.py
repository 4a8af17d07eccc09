"""Each poll names the last answer of its epoch that brought requests (``received``).

The service leases again what a later answer leased to that epoch: an answer lost
on the way (a link that dropped it, a poll that timed out) would otherwise strand
its requests until the poll lease expires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chaos.launch import wait_for
from connector.agent.decide import Action, Decision
from connector.agent.executor import AgentState, Executor, ExecutorDeps
from connector.service_client import CertificateRequest, Polled, ProfileSpec, UploadItem
from tests.fixtures.executor import FakeIssuer, FakeLease, fake_pki

PROFILE = ProfileSpec("p", "rsa2048", "user-auth", "CN=x", (), 365)


class Service:
    """Each poll answers the next planned batch of ids, with a lease sequence when it
    holds any; it records what each poll said it received."""

    def __init__(self, plan: list[list[str]]) -> None:
        self.plan = plan
        self.named: list[int | None] = []
        self.seq = 10

    def poll_work(
        self, name: str, epoch: int, max_items: int, wait_s: float, **kwargs: Any
    ) -> Polled:
        self.named.append(kwargs.get("received"))
        ids = self.plan.pop(0)
        if not ids:
            return Polled([], 0)
        self.seq += 1
        return Polled([CertificateRequest(i, f"d-{i}", PROFILE) for i in ids], 0, self.seq)

    def record_intent(self, name: str, epoch: int, request_id: str, pem: str) -> None:
        pass

    def record_intents(
        self, name: str, epoch: int, items: Sequence[tuple[str, str]]
    ) -> Mapping[str, None]:
        return dict.fromkeys((rid for rid, _ in items), None)

    def upload_result(self, name: str, epoch: int, request_id: str, *_: Any, **__: Any) -> None:
        pass

    def upload_results(
        self, name: str, epoch: int, items: Sequence[UploadItem]
    ) -> Mapping[str, None]:
        return dict.fromkeys((item.request_id for item in items), None)


def executor_for(service: Service, lease: FakeLease) -> Executor:
    deps = ExecutorDeps(
        name="c1",
        service=service,
        issuer=FakeIssuer(),
        pki=fake_pki(),
        lease=lease,
        ca_errors=(RuntimeError,),
        is_retryable=lambda exc: True,
        workers=2,
        max_in_hand=12,
    )
    return Executor(deps, AgentState())


def test_each_poll_names_the_last_answer_of_its_epoch_that_brought_requests() -> None:
    service = Service([["r1"], [], ["r2"], ["r3"]])
    lease = FakeLease()
    executor = executor_for(service, lease)
    try:
        for epoch in (7, 7, 7, 8):
            lease.epoch = epoch
            executor.fence.arm(epoch)
            executor.execute(Decision(Action.ISSUE, "test", epoch))
            wait_for(lambda: executor.in_hand == 0, timeout=10, what="the batch issued")
    finally:
        executor.close()
    # The first poll names nothing; an empty answer leases nothing and changes
    # nothing; a new epoch has received nothing of its own yet.
    assert service.named == [None, 11, 11, None]
