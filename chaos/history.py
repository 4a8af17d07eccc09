"""A Jepsen-style history: every operation as invoke / ok / fail / info events.

Each client (a device, an admin, the nemesis, the observer) is a *process*.
An operation starts with an ``invoke`` event and ends with exactly one of
``ok`` (it happened), ``fail`` (it certainly did not happen) or ``info`` (we
do not know; e.g. a timeout). Events that are observations rather than
operations (the observer seeing a new leader, the nemesis starting a fault)
are single ``info`` events. Times are monotonic seconds since the history
started, so they order events across threads of one harness process.

    history = History(path=run_dir / "history.jsonl")   # streams as it goes
    op = history.invoke("device-3", "checkin", {"device": "d3"})
    ...
    history.complete(op, "ok", {"serial": "1234", "epoch": 7})
    history.info("nemesis", "fault", {"scenario": "connector-down", "phase": "start"})
    history.close()

    events = read_history(run_dir / "history.jsonl")

The checkers (:mod:`chaos.checkers`) read histories; they never see the
connectors' own word.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

__all__ = [
    "Event",
    "EventType",
    "History",
    "Operation",
    "pair_operations",
    "read_history",
    "write_history",
]

EventType = Literal["invoke", "ok", "fail", "info"]
_EVENT_TYPES: frozenset[str] = frozenset({"invoke", "ok", "fail", "info"})


@dataclass(frozen=True)
class Event:
    """One line of the history.

    ``index`` orders events totally (assigned under a lock); ``time`` is
    monotonic seconds since the history began; ``wall`` is Unix time, for
    humans correlating with logs.
    """

    index: int
    type: EventType
    process: str
    f: str
    value: Any = None
    time: float = 0.0
    wall: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "type": self.type,
                "process": self.process,
                "f": self.f,
                "value": self.value,
                "time": round(self.time, 6),
                "wall": round(self.wall, 6),
            },
            sort_keys=True,
            default=str,
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError(f"history line is not a JSON object: {line[:80]!r}")
        kind = raw.get("type")
        if kind not in _EVENT_TYPES:
            raise ValueError(f"unknown event type {kind!r}")
        return cls(
            index=int(raw["index"]),
            type=cast(EventType, kind),
            process=str(raw["process"]),
            f=str(raw["f"]),
            value=raw.get("value"),
            time=float(raw.get("time", 0.0)),
            wall=float(raw.get("wall", 0.0)),
        )


@dataclass(frozen=True)
class Operation:
    """An invocation paired with its completion (``None`` while in flight)."""

    invoke: Event
    completion: Event | None = None

    @property
    def process(self) -> str:
        return self.invoke.process

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def result(self) -> str:
        """``ok``, ``fail``, ``info`` or ``pending``."""
        return self.completion.type if self.completion is not None else "pending"

    @property
    def latency(self) -> float | None:
        if self.completion is None:
            return None
        return self.completion.time - self.invoke.time


@dataclass
class History:
    """An append-only, thread-safe history, optionally streamed to a JSONL file."""

    path: Path | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    events: list[Event] = field(default_factory=list)
    _origin: float = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _file: IO[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._origin = self.clock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")

    def now(self) -> float:
        """Seconds since the history began, on the same clock as event times."""
        return self.clock() - self._origin

    def to_history_time(self, monotonic: float) -> float:
        """Convert a raw monotonic reading (same clock) to history time."""
        return monotonic - self._origin

    def _append(self, kind: EventType, process: str, f: str, value: Any) -> Event:
        with self._lock:
            event = Event(
                index=len(self.events),
                type=kind,
                process=process,
                f=f,
                value=value,
                time=self.now(),
                wall=self.wall_clock(),
            )
            self.events.append(event)
            if self._file is not None:
                self._file.write(event.to_json() + "\n")
                self._file.flush()
            return event

    def invoke(self, process: str, f: str, value: Any = None) -> Event:
        return self._append("invoke", process, f, value)

    def complete(self, invocation: Event, kind: EventType, value: Any = None) -> Event:
        """Close ``invocation`` with ``ok``, ``fail`` or ``info``."""
        if invocation.type != "invoke":
            raise ValueError("complete() takes the invoke event it closes")
        if kind == "invoke":
            raise ValueError("an operation completes with ok, fail or info")
        return self._append(kind, invocation.process, invocation.f, value)

    def info(self, process: str, f: str, value: Any = None) -> Event:
        """A standalone observation (not part of an invoke/complete pair)."""
        return self._append("info", process, f, value)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def write_history(events: Iterable[Event], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(event.to_json() + "\n")


def read_history(path: Path) -> list[Event]:
    """Read a JSONL history; a truncated last line (a crash mid-write) is ignored."""
    events: list[Event] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(Event.from_json(line))
        except (ValueError, KeyError) as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: bad history line: {exc}") from exc
    return events


def pair_operations(events: Iterable[Event]) -> Iterator[Operation]:
    """Pair each invoke with the next completion of the same process.

    Like Jepsen, a process runs one operation at a time, so the next
    non-invoke event of that process with the same ``f`` closes it.
    Standalone ``info`` events (no open invocation) are not operations and
    are skipped. Operations still open at the end are yielded as pending.
    """
    open_ops: dict[tuple[str, str], Event] = {}
    done: list[Operation] = []
    for event in events:
        key = (event.process, event.f)
        if event.type == "invoke":
            if key in open_ops:
                done.append(Operation(open_ops[key]))
            open_ops[key] = event
        elif key in open_ops:
            done.append(Operation(open_ops.pop(key), event))
    done.extend(Operation(inv) for inv in open_ops.values())
    done.sort(key=lambda op: op.invoke.index)
    yield from done
