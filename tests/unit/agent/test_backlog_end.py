"""The end of a backlog: requests report as soon as they are ready, not with their batch.

While the service has more work, a batch's requests share one intents call and
one results call, waiting for each other (the cores have other keys to make
meanwhile). Once a poll says nothing is left (``requests_waiting == 0``), the
batches in flight stop waiting: otherwise the slowest key holds its batch-mates'
CA calls and uploads until the cores have nothing left to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from connector.agent import batches
from connector.agent.decide import Action, Decision
from connector.agent.executor import AgentState, Executor, ExecutorDeps
from connector.agent.ports import Pki
from connector.service_client import CertificateRequest, Polled, ProfileSpec, UploadItem

PROFILE = ProfileSpec("p", "rsa2048", "user-auth", "CN=x", (), 365)


class Lease:
    def fresh_epoch(self) -> int | None:
        return 7

    def release(self, reason: str) -> None:
        pass

    def leave(self, reason: str) -> None:
        pass


class Issued:
    serial = 5
    ca_name = "primary"
    certificate = None
    chain: list[Any] = []
    uncertain = ()


class Issuer:
    def issue(self, csr: Any, template: str, request_id: str, deadline: float) -> Any:
        return Issued()

    def ca_states(self) -> Mapping[str, str]:
        return {}


class Key:
    def public_key(self) -> Any:
        return self

    def public_bytes(self, *_: Any) -> bytes:
        return b"PEM"


class Service:
    """Each poll answers the next planned batch: (request ids, requests left after it)."""

    def __init__(self, plan: list[tuple[list[str], int]]) -> None:
        self.plan = plan
        self.lock = threading.Lock()
        self.intents: list[list[str]] = []  # one entry per call
        self.results: list[list[str]] = []

    def poll_work(self, name: str, epoch: int, max_items: int, wait_s: float, **_: Any) -> Polled:
        ids, left = self.plan.pop(0)
        assert len(ids) <= max_items
        return Polled([CertificateRequest(i, f"d-{i}", PROFILE) for i in ids], 0, left)

    def record_intents(
        self, name: str, epoch: int, items: Sequence[tuple[str, str]]
    ) -> Mapping[str, None]:
        with self.lock:
            self.intents.append([rid for rid, _ in items])
        return dict.fromkeys((rid for rid, _ in items), None)

    def record_intent(self, name: str, epoch: int, request_id: str, pem: str) -> None:
        with self.lock:
            self.intents.append([request_id])

    def upload_results(
        self, name: str, epoch: int, items: Sequence[UploadItem]
    ) -> Mapping[str, None]:
        with self.lock:
            self.results.append([item.request_id for item in items])
        return dict.fromkeys((item.request_id for item in items), None)

    def upload_result(self, name: str, epoch: int, request_id: str, *_: Any) -> None:
        with self.lock:
            self.results.append([request_id])


def executor_for(service: Service, new_key: Callable[[str], Key]) -> Executor:
    deps = ExecutorDeps(
        name="c1",
        service=service,
        issuer=Issuer(),
        pki=Pki(
            new_key=new_key,
            build_csr=lambda request, _key: request.id,
            pack_pfx=lambda *_: b"pfx",
            seal=lambda pfx: pfx,
        ),
        lease=Lease(),
        ca_errors=(RuntimeError,),
        is_retryable=lambda exc: True,
        workers=2,
        max_in_hand=12,
    )
    return Executor(deps, AgentState())


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


ISSUE = Decision(Action.ISSUE, "test", 7)


def test_while_work_waits_a_batch_reports_together() -> None:
    service = Service([(["r1", "r2", "r3", "r4"], 10)])
    executor = executor_for(service, lambda _kt: Key())
    try:
        executor.execute(ISSUE)
        wait_for(lambda: executor.in_hand == 0)
    finally:
        executor.close()
    assert [sorted(call) for call in service.intents] == [["r1", "r2", "r3", "r4"]]
    assert [sorted(call) for call in service.results] == [["r1", "r2", "r3", "r4"]]


def test_the_last_batch_reports_request_by_request() -> None:
    service = Service([(["r1", "r2", "r3"], 0)])
    executor = executor_for(service, lambda _kt: Key())
    try:
        executor.execute(ISSUE)
        wait_for(lambda: executor.in_hand == 0)
    finally:
        executor.close()
    assert sorted(service.intents) == [["r1"], ["r2"], ["r3"]]
    assert sorted(service.results) == [["r1"], ["r2"], ["r3"]]


def test_the_end_of_the_backlog_releases_the_batches_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Batch-mates would wait a minute for a slow key: only the release lets them go.
    monkeypatch.setattr(batches, "_INTENTS_WAIT_S", 60.0)
    slow_key = threading.Event()
    keys = {"made": 0}
    lock = threading.Lock()

    def new_key(_kt: str) -> Key:
        with lock:
            keys["made"] += 1
            slow = keys["made"] == 4  # the first batch's last key to start
        if slow:
            assert slow_key.wait(10)
        return Key()

    first = {"r1", "r2", "r3", "r4"}
    service = Service([(sorted(first), 1), (["r5"], 0)])
    executor = executor_for(service, new_key)

    def reported(among: set[str]) -> set[str]:
        with service.lock:
            return {rid for call in service.results for rid in call} & among

    try:
        executor.execute(ISSUE)
        wait_for(lambda: keys["made"] == 4)
        assert reported(first) == set()  # three batch-mates wait for the slow key
        executor.execute(ISSUE)  # takes r5; nothing is left at the service
        # The three stop waiting for the fourth, whose key is still being made.
        wait_for(lambda: len(reported(first)) == 3)
        slow_key.set()
        wait_for(lambda: executor.in_hand == 0)
    finally:
        slow_key.set()
        executor.close()
    assert reported(first | {"r5"}) == first | {"r5"}


class NamingService(Service):
    """Also records what each poll said it received, and answers with lease sequences."""

    def __init__(self, plan: list[tuple[list[str], int]]) -> None:
        super().__init__(plan)
        self.named: list[int | None] = []
        self.seq = 10

    def poll_work(
        self, name: str, epoch: int, max_items: int, wait_s: float, **kwargs: Any
    ) -> Polled:
        self.named.append(kwargs.get("received"))
        polled = super().poll_work(name, epoch, max_items, wait_s)
        if not polled.requests:
            return polled
        self.seq += 1
        return Polled(polled.requests, 0, polled.requests_waiting, self.seq)


def test_each_poll_names_the_last_answer_that_brought_requests() -> None:
    service = NamingService([(["r1"], 5), ([], 5), (["r2"], 5)])
    executor = executor_for(service, lambda _kt: Key())
    try:
        for _ in range(3):
            executor.execute(ISSUE)
            wait_for(lambda: executor.in_hand == 0)
    finally:
        executor.close()
    # The first poll names nothing; an empty answer leases nothing and changes nothing.
    assert service.named == [None, 11, 11]
