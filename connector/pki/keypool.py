"""A bounded in-memory pool of pre-generated private keys.

Key generation is the slow step of issuance (RSA-2048: tens of milliseconds
per key and core). A pool filled in the background lets a burst of requests,
or the first requests after a takeover, start at once::

    pool = KeyPool({KeyType.RSA2048: 64, KeyType.P256: 16}, workers=1)
    pool.start()                      # background threads fill up to the bounds
    key = pool.take(KeyType.RSA2048)  # from the pool, or generated now if it is empty
    pool.stats()                      # {"hits": ..., "misses": ..., "available": {...}}
    pool.stop()

    KeyPool({KeyType.RSA2048: 0}, on_demand=2)   # at most two keys made at once by take()

Keys never leave memory; a key is handed out once and forgotten by the pool.
OpenSSL releases the GIL while generating, so the worker threads use other
cores while the agent's own thread is busy. On Linux the filler threads run
at a lower scheduling priority (``nice``, per thread), so the pool fills
from idle CPU and yields to requests being served.

Keys made on demand (the pool is empty: a saturated leader) are made at most
``on_demand`` at a time, by default one per CPU this process may run on; the
other callers wait their turn, first come, first served. A caller that waits
has the whole of its key ahead of it, so a count of requests waiting for
their key measures CPU work still to do: the leader's hand polls for more
once few are left (connector/agent/hand.py). When every caller made its key
at once, sharing the cores, that count included keys already half made: they
ran out before a poll's round trip came back, and across a WAN (80 ms) the
leader's core sat idle for 4-6 % of each saturation round
(docs/connector.md, "One key at a time per CPU").
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping

from connector.pki.keys import KeyType, PrivateKey, generate_key

__all__ = ["KeyPool", "usable_cpus"]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class _Turns:
    """At most ``width`` holders at once, admitted first come, first served.

    Each waiter sleeps on a lock of its own, and a holder that leaves wakes the
    next one alone. A shared condition woke every waiter on every key (up to
    fifteen on a saturated leader, each to find it was not its turn), and that
    CPU came out of the core making the keys.
    """

    def __init__(self, width: int) -> None:
        self._lock = threading.Lock()
        self._free = width
        self._queue: deque[threading.Lock] = deque()

    def join(self) -> threading.Lock | None:
        """None: go now. A held lock: acquire it to wait for a slot handed to you."""
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return None
            gate = threading.Lock()
            gate.acquire()
            self._queue.append(gate)
            return gate

    def leave(self) -> None:
        with self._lock:
            if self._queue:
                self._queue.popleft().release()  # the slot passes on, never freed between
            else:
                self._free += 1


class KeyPool:
    """Pre-generated keys per key type, at most ``capacity[type]`` of each."""

    def __init__(
        self,
        capacity: Mapping[KeyType | str, int],
        *,
        workers: int = 1,
        generate: Callable[[KeyType], PrivateKey] = generate_key,
        nice: int = 10,
        on_demand: int | None = None,
    ) -> None:
        """``on_demand``: keys :meth:`take` makes at once when none is pooled (None:
        one per CPU this process may run on, :func:`usable_cpus`)."""
        if workers < 1:
            raise ValueError("KeyPool workers must be >= 1")
        if on_demand is not None and on_demand < 1:
            raise ValueError("KeyPool on_demand must be >= 1")
        self._capacity: dict[KeyType, int] = {}
        for kt, bound in capacity.items():
            if bound < 0:
                raise ValueError(f"KeyPool capacity for {kt} must be >= 0")
            self._capacity[KeyType.parse(str(kt))] = bound
        self._keys: dict[KeyType, deque[PrivateKey]] = {kt: deque() for kt in self._capacity}
        self._pending: dict[KeyType, int] = dict.fromkeys(self._capacity, 0)
        self._generate = generate
        self._workers = workers
        self._nice = nice
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._hits = 0
        self._misses = 0
        # Keys made on demand take turns in the order their callers found the pool
        # empty: each miss joins the queue under the pool's lock, with the miss.
        self._on_demand = on_demand or usable_cpus()
        self._turns = _Turns(self._on_demand)

    def start(self) -> KeyPool:
        with self._cond:
            if self._threads:
                return self
            self._stopping = False
            for i in range(self._workers):
                thread = threading.Thread(target=self._fill, name=f"keypool-{i}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return self

    def stop(self) -> None:
        """Stop filling and drop every pooled key."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()
        with self._cond:
            for keys in self._keys.values():
                keys.clear()

    def __enter__(self) -> KeyPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_type(self) -> KeyType | None:
        """The key type furthest below its bound (counting keys being generated), if any."""
        best, best_gap = None, 0
        for kt, bound in self._capacity.items():
            gap = bound - len(self._keys[kt]) - self._pending[kt]
            if gap > best_gap:
                best, best_gap = kt, gap
        return best

    def _fill(self) -> None:
        if self._nice and hasattr(os, "setpriority"):
            # Linux: a thread is a task, and PRIO_PROCESS with its id renices only it.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        while True:
            with self._cond:
                kt = self._next_type()
                while kt is None and not self._stopping:
                    self._cond.wait()
                    kt = self._next_type()
                if self._stopping or kt is None:
                    return
                self._pending[kt] += 1
            key: PrivateKey | None = None
            try:
                key = self._generate(kt)
            finally:
                # One critical section: "pending" becomes "available" atomically, or
                # another filler would see a free slot for a moment and overfill.
                with self._cond:
                    self._pending[kt] -= 1
                    if key is not None and not self._stopping:
                        self._keys[kt].append(key)
                    self._cond.notify_all()

    def take(self, key_type: KeyType | str) -> PrivateKey:
        """A key from the pool, or a freshly generated one when none is ready."""
        kt = key_type if isinstance(key_type, KeyType) else KeyType.parse(key_type)
        with self._cond:
            keys = self._keys.get(kt)
            if keys:
                self._hits += 1
                key = keys.popleft()
                self._cond.notify_all()  # a slot opened: refill it
                return key
            self._misses += 1
            gate = self._turns.join()
        if gate is not None:
            gate.acquire()  # released by the turn before ours, which hands us its slot
        try:
            return self._generate(kt)
        finally:
            self._turns.leave()

    def available(self, key_type: KeyType | str) -> int:
        kt = key_type if isinstance(key_type, KeyType) else KeyType.parse(key_type)
        with self._cond:
            return len(self._keys.get(kt, ()))

    def wait_full(self, timeout: float | None = None) -> bool:
        """Block until every type is at its bound (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: all(len(self._keys[kt]) >= b for kt, b in self._capacity.items()),
                timeout=timeout,
            )

    def stats(self) -> dict[str, object]:
        with self._cond:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "available": {kt.value: len(keys) for kt, keys in self._keys.items()},
                "capacity": {kt.value: b for kt, b in self._capacity.items()},
            }
