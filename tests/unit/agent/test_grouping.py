"""CallGroup: members of one batch share one call; nobody waits for a member that left."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import pytest

from connector.agent.grouping import CallGroup
from connector.service_client import BadRequest, ServiceUnavailable

Items = Sequence[tuple[str, str]]


class Recorder:
    def __init__(self, answer: Callable[[Items], Mapping[str, BaseException | None]]) -> None:
        self.answer = answer
        self.sent: list[list[str]] = []

    def __call__(self, items: Items) -> Mapping[str, BaseException | None]:
        self.sent.append([key for key, _ in items])
        return self.answer(items)


def all_ok(items: Items) -> Mapping[str, BaseException | None]:
    return dict.fromkeys((key for key, _ in items), None)


def run_members(
    group: CallGroup[str], plan: Sequence[str | None], started: threading.Barrier | None = None
) -> dict[str, BaseException | None]:
    """One thread per member; ``None`` in ``plan`` leaves without calling."""
    outcomes: dict[str, BaseException | None] = {}
    lock = threading.Lock()

    def member(key: str | None, index: int) -> None:
        with group.member() as handle:
            if started is not None:
                started.wait(timeout=5)
            if key is None:
                return
            try:
                handle.call(key, f"payload-{key}")
                result: BaseException | None = None
            except BaseException as exc:
                result = exc
            with lock:
                outcomes[key] = result

    threads = [threading.Thread(target=member, args=(k, i)) for i, k in enumerate(plan)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive(), "a member is stuck"
    return outcomes


def test_members_of_a_batch_share_one_call_and_get_their_own_outcome() -> None:
    def answer(items: Items) -> Mapping[str, BaseException | None]:
        return {key: BadRequest("no", status=404) if key == "b" else None for key, _ in items}

    send = Recorder(answer)
    group = CallGroup(3, send, max_wait_s=30.0)
    outcomes = run_members(group, ["a", "b", "c"], threading.Barrier(3))
    assert len(send.sent) == 1
    assert sorted(send.sent[0]) == ["a", "b", "c"]
    assert outcomes["a"] is None
    assert outcomes["c"] is None
    refused = outcomes["b"]
    assert isinstance(refused, BadRequest)
    assert refused.status == 404


def test_a_member_that_leaves_is_not_waited_for() -> None:
    send = Recorder(all_ok)
    # A max wait far longer than the join timeout: finishing proves nobody waited for it.
    group = CallGroup(3, send, max_wait_s=60.0)
    outcomes = run_members(group, ["a", None, "c"], threading.Barrier(3))
    assert outcomes == {"a": None, "c": None}
    assert len(send.sent) == 1
    assert sorted(send.sent[0]) == ["a", "c"]


def test_a_straggler_is_sent_on_its_own_after_the_wait() -> None:
    send = Recorder(all_ok)
    group = CallGroup(2, send, max_wait_s=0.05)
    release = threading.Event()
    result: list[BaseException | None] = []

    def late() -> None:
        release.wait(timeout=5)
        with group.member() as handle:
            handle.call("late", "x")
            result.append(None)

    thread = threading.Thread(target=late)
    thread.start()
    with group.member() as handle:
        handle.call("early", "x")  # returns after max_wait: the other has not arrived
    release.set()
    thread.join(timeout=5)
    assert send.sent == [["early"], ["late"]]
    assert result == [None]


def test_a_failed_call_fails_every_member_of_it() -> None:
    def down(items: Items) -> Mapping[str, BaseException | None]:
        raise ServiceUnavailable("POST /requests/intents: connection refused")

    group = CallGroup(3, Recorder(down), max_wait_s=30.0)
    outcomes = run_members(group, ["a", "b", "c"], threading.Barrier(3))
    assert set(outcomes) == {"a", "b", "c"}
    assert all(isinstance(exc, ServiceUnavailable) for exc in outcomes.values())


def test_an_item_the_answer_leaves_out_is_an_error_not_a_success() -> None:
    group = CallGroup(1, Recorder(lambda items: {}), max_wait_s=1.0)
    with group.member() as handle, pytest.raises(LookupError):
        handle.call("a", "x")


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        CallGroup(0, Recorder(all_ok), max_wait_s=1.0)
    group = CallGroup(2, Recorder(all_ok), max_wait_s=0.01)
    with group.member() as handle:
        handle.call("a", "x")
        with pytest.raises(RuntimeError, match="at most once"):
            handle.call("a", "x")
