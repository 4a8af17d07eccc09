"""The hand: cores bound the requests waiting for a key, not those waiting on the network."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from chaos.launch import wait_for
from connector.agent.decide import Action, Decision
from connector.agent.executor import AgentState, Executor, ExecutorDeps
from connector.agent.hand import Hand, HandView, poll_size
from connector.service_client import (
    CertificateRequest,
    Polled,
    ProfileSpec,
    UploadItem,
)
from tests.fixtures.executor import FakeIssuer, FakeLease, Issued, fake_pki


def view(**changes: int) -> HandView:
    base = {"workers": 4, "batch_size": 100, "max_in_hand": 64, "in_hand": 0, "unkeyed": 0}
    return HandView(**(base | changes))


def test_an_empty_hand_takes_two_per_worker() -> None:
    assert poll_size(view()).count == 8


def test_refills_once_half_of_the_key_stage_is_done() -> None:
    assert poll_size(view(in_hand=5, unkeyed=5)).count == 0
    assert poll_size(view(in_hand=4, unkeyed=4)).count == 4


def test_requests_past_their_key_do_not_hold_the_next_poll() -> None:
    # 40 requests wait on round trips (intents, CA, upload), none on a key: the
    # cores would idle if these counted against the key stage.
    assert poll_size(view(in_hand=40, unkeyed=0)).count == 8


def test_the_hand_is_bounded_and_never_polls_for_a_few() -> None:
    assert poll_size(view(in_hand=64)).count == 0
    assert poll_size(view(in_hand=61)).count == 0  # room for 3 < workers
    assert poll_size(view(in_hand=60)).count == 4
    assert poll_size(view(batch_size=3)).count == 3
    assert "in hand" in poll_size(view(in_hand=64)).reason


def test_the_hand_says_once_when_room_for_a_poll_opens() -> None:
    hand = Hand(workers=2, batch_size=100, max_in_hand=6)
    hand.took(4)
    assert hand.capacity == 0
    assert hand.keyed() is False  # 3 wait for a key: still over half of the stage
    assert hand.keyed() is True  # 2 wait: room opens, wake the loop once
    assert hand.keyed() is False  # more room, no news
    hand.took(2)  # 4 in hand past their key or making it; 6 in all
    assert hand.capacity == 0
    assert [hand.keyed(), hand.keyed()] == [False, False]  # the bound holds
    assert hand.finished() is False  # room for 1 < workers
    assert hand.finished() is True
    assert hand.finished(keyed=False) is False  # a request that never ran
    assert hand.view().unkeyed == 0  # took 6: 5 keyed, 1 never ran


class SlowUploads:
    """Polls hand out requests; the results call blocks until released."""

    def __init__(self) -> None:
        self.count = 0
        self.uploading = threading.Event()
        self.release = threading.Event()

    def poll_work(self, name: str, epoch: int, max_items: int, wait_s: float, **_: Any) -> Polled:
        profile = ProfileSpec("p", "rsa2048", "user-auth", "CN=x", (), 365)
        out = []
        for _ in range(max_items):
            self.count += 1
            out.append(CertificateRequest(f"r{self.count}", f"d{self.count}", profile))
        return Polled(out)

    def record_intents(
        self, name: str, epoch: int, items: Sequence[tuple[str, str]]
    ) -> Mapping[str, None]:
        return dict.fromkeys((rid for rid, _ in items), None)

    def upload_results(
        self, name: str, epoch: int, items: Sequence[UploadItem]
    ) -> Mapping[str, None]:
        self.uploading.set()
        assert self.release.wait(10)
        return dict.fromkeys((item.request_id for item in items), None)


def test_the_executor_polls_again_while_a_batch_waits_on_the_network() -> None:
    service = SlowUploads()
    answered: list[str] = []
    deps = ExecutorDeps(
        name="c1",
        service=service,
        issuer=FakeIssuer(),
        pki=fake_pki(),
        lease=FakeLease(),
        ca_errors=(RuntimeError,),
        is_retryable=lambda exc: True,
        workers=2,
        max_in_hand=12,
        on_ca_answer=answered.append,
    )
    executor = Executor(deps, AgentState())
    issue = Decision(Action.ISSUE, "test", 7)
    try:
        executor.execute(issue)
        assert executor.in_hand == 4
        assert service.uploading.wait(10)
        # Every key of the first batch is made; its upload hangs on the network,
        # and the next batches are taken all the same.
        wait_for(lambda: executor.issue_capacity == 4, timeout=10, what="room for a poll")
        executor.execute(issue)
        wait_for(lambda: executor.issue_capacity == 4, timeout=10, what="room for a poll")
        executor.execute(issue)
        assert executor.in_hand == 12  # three batches in hand, two of them keyed
        assert executor.issue_capacity == 0  # the bound
    finally:
        service.release.set()
        executor.close()
    assert executor.in_hand == 0
    assert executor.state.counts["delivered"] == 12
    # Each CA answer is reach news: the leader's probe of that CA can wait.
    assert answered == [Issued.ca_name] * 12
