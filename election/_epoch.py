"""The cluster's epoch counter (``/epoch``), read as untrusted input.

    counter = EpochCounter()
    counter.saw(leader.epoch)                         # every epoch a snapshot showed
    value, version = counter.for_cas(read_epoch_node) # a guess, or a read after a miss
    ... set_data(/epoch, str(value + 1), version=version) in the take transaction ...
    counter.committed(value + 1, version + 1)         # or counter.missed()
    counter.problem                                    # why /epoch was not believed, or None

Each take writes ``value + 1`` with a version check, so the node's version
normally equals its value and a taker needs no read: it guesses from the
highest epoch it saw in ``/leader``. A wrong guess only fails the CAS and forces
a read. Guesses are kept inside ZooKeeper's 32-bit version range (kazoo cannot
even serialise a larger one).

Anyone with write access can put anything in ``/epoch``. A value that is not a
decimal integer in ``[0, MAX_EPOCH]`` is not believed: the next epoch then
counts on from the highest of the node's version and every epoch this member
saw, and the take writes it over the bad value. A counter set back below an
epoch this member saw in ``/leader`` counts on from that epoch instead. The
elector reports each such repair (event 5116). Fencing safety never rests on
this counter alone: the service refuses an epoch at or below the highest it has
seen, so a counter set too low costs liveness (a register refused as stale),
never a second writer.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MAX_EPOCH", "EpochCounter", "parse_epoch"]

MAX_EPOCH = 2**48
"""Far inside 2**53 (JSON numbers stay exact) and beyond any honest cluster's life."""

_MAX_VERSION = 2**31 - 1


def parse_epoch(raw: bytes | None) -> tuple[int | None, str | None]:
    """(value, None) for a believable ``/epoch`` content, else (None, why)."""
    text = (raw or b"0").strip()
    if len(text) > 20 or not text.isdigit():
        shown = text[:24].decode("utf-8", "replace")
        return None, f"/epoch holds {shown!r}, not a non-negative integer"
    value = int(text)
    if value > MAX_EPOCH:
        return None, f"/epoch holds {value}, above the maximum epoch {MAX_EPOCH}"
    return value, None


class EpochCounter:
    """This member's view of ``/epoch``: a guess for one-round-trip CAS, and repairs."""

    def __init__(self) -> None:
        self._cached: tuple[int, int] | None = None  # (value, version)
        self._read_next = False
        self.highest_seen = 0
        self.problem: str | None = None

    def saw(self, epoch: int) -> None:
        """An epoch some leader held (read from /leader): the counter is at least this."""
        if not 0 <= epoch <= MAX_EPOCH:
            return
        self.highest_seen = max(self.highest_seen, epoch)
        if epoch <= _MAX_VERSION and (self._cached is None or epoch > self._cached[0]):
            self._cached = (epoch, epoch)

    def for_cas(self, read: Callable[[], tuple[bytes | None, int]]) -> tuple[int, int]:
        """(value to count on from, version to check): the guess, or ``read()`` after a miss."""
        if self._cached is not None and not self._read_next:
            return self._cached
        raw, version = read()
        self._read_next = False
        value, problem = parse_epoch(raw)
        if value is None:
            # Count on past everything we know was used; the CAS overwrites the bad value.
            value = max(version, self.highest_seen)
        elif value < self.highest_seen:
            problem = f"/epoch went back to {value} below epoch {self.highest_seen} seen in /leader"
            value = self.highest_seen
        self.problem = problem
        self._cached = (value, version)
        return self._cached

    def committed(self, epoch: int, version: int) -> None:
        self._cached = (epoch, version)
        self.highest_seen = max(self.highest_seen, epoch)
        self.problem = None

    def missed(self) -> None:
        """The CAS failed (a race or a stale guess): read before the next try."""
        self._cached = None
        self._read_next = True
