"""Requests of one poll batch share their service calls: one intents call, one results call.

    group = CallGroup(expected=4, send=lambda items: client.record_intents(name, epoch, items),
                      max_wait_s=0.5)
    # on each of the four issuing threads:
    with group.member() as member:
        member.call(request.id, public_key_pem)   # None, or raises this item's BadRequest
                                                  # or the whole call's exception
    # a member that leaves the block without calling is counted out

Every call to the service costs both sides far more CPU than the work it
carries, so requests taken together also report together. The first member to
arrive in a round sends for everyone once all members still expected have
arrived or left, or after ``max_wait_s``; members arriving later form the next
round. Waiting costs latency, not CPU (other batches keep the cores busy), and
``max_wait_s`` bounds it when one member is slow (a CA retrying, say).

``send`` gets ``[(key, payload), ...]`` and returns ``{key: None | exception}``
for the items it answered; an exception it raises is every member's.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["CallGroup", "Member"]

P = TypeVar("P")

Send = Callable[[Sequence[tuple[str, P]]], Mapping[str, BaseException | None]]


class _Round(Generic[P]):
    def __init__(self) -> None:
        self.items: list[tuple[str, P]] = []
        self.done = threading.Event()  # set once the call answered, or failed
        self.outcomes: Mapping[str, BaseException | None] = {}
        self.error: BaseException | None = None


class CallGroup(Generic[P]):
    """``expected`` members, each calling at most once; see the module docstring."""

    def __init__(
        self,
        expected: int,
        send: Send[P],
        *,
        max_wait_s: float,
    ) -> None:
        if expected < 1:
            raise ValueError("a CallGroup needs at least one member")
        self._expected = expected
        self._send = send
        self._max_wait_s = max_wait_s
        # Only a round's sender waits on this condition, for every member to settle;
        # the others wait for their round's ``done``. One condition for both woke
        # every waiting member at each arrival, each to find its call not sent yet.
        self._cond = threading.Condition()
        self._settled = 0  # members that called or left
        self._round: _Round[P] = _Round()

    @contextmanager
    def member(self) -> Iterator[Member[P]]:
        member = Member(self)
        try:
            yield member
        finally:
            if not member.settled:
                self._leave()

    def _settle(self) -> None:
        """One more member called or left (under the lock): the last one wakes the sender."""
        self._settled += 1
        if self._settled >= self._expected:
            self._cond.notify()

    def _leave(self) -> None:
        with self._cond:
            self._settle()

    def _call(self, key: str, payload: P) -> None:
        with self._cond:
            this = self._round
            this.items.append((key, payload))
            sender = len(this.items) == 1
            self._settle()
            if sender:
                self._cond.wait_for(
                    lambda: self._settled >= self._expected, timeout=self._max_wait_s
                )
                self._round = _Round()  # whoever arrives from now on waits for the next send
        if sender:
            try:
                this.outcomes = self._send(list(this.items))
            except BaseException as exc:
                this.error = exc
            this.done.set()
        else:
            this.done.wait()
        if this.error is not None:
            # A copy each: one exception object raised on several threads would
            # collect all their tracebacks.
            raise copy.copy(this.error) if not sender else this.error
        if key not in this.outcomes:
            raise LookupError(f"the grouped call answered nothing for {key!r}")
        outcome = this.outcomes[key]
        if outcome is not None:
            raise outcome


class Member(Generic[P]):
    """One member's handle: :meth:`call` at most once."""

    def __init__(self, group: CallGroup[P]) -> None:
        self._group = group
        self.settled = False

    def call(self, key: str, payload: P) -> None:
        if self.settled:
            raise RuntimeError("a CallGroup member calls at most once")
        self.settled = True
        self._group._call(key, payload)
