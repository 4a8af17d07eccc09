"""CPU time spent by each part of a benchmark, read from ``/proc`` (Linux).

    meter = CpuMeter({"service": [svc.pid], "zookeeper": zk_pids}, include_self="bench")
    meter.start()
    ...                                   # the measured work
    meter.stop()                          # adds to the totals; start/stop again for more
    meter.per_item(300)                   # {"service": 11.8, "zookeeper": 0.9, ...} ms each

Figures are user + system CPU of every thread of each process, so they show
where a shared machine's cores went, whatever the wall clock did. A process
that exits between ``start`` and ``stop`` is counted up to its last reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

__all__ = ["CpuMeter", "pin_process", "process_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pin_process(pid: int, cpus: Iterable[int]) -> int:
    """Bind every thread of ``pid`` to ``cpus``; returns how many threads were bound.

    ``sched_setaffinity`` binds one thread; threads started later inherit the
    affinity of the thread that starts them, so binding all current threads
    binds the process for good.
    """
    wanted = set(cpus)
    bound = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), wanted)
        except (ProcessLookupError, FileNotFoundError):
            continue  # a thread that ended meanwhile
        bound += 1
    return bound


class CpuMeter:
    """Accumulates CPU seconds per named part over one or more start/stop windows."""

    def __init__(self, parts: Mapping[str, Iterable[int]], *, include_self: str | None = None):
        self._pids = {name: [int(p) for p in pids] for name, pids in parts.items()}
        self._self = include_self
        self._totals: dict[str, float] = dict.fromkeys(self._pids, 0.0)
        if include_self:
            self._totals[include_self] = 0.0
        self._started: dict[str, float] | None = None
        self._last_seen: dict[int, float] = {}

    def _pid_seconds(self, pid: int) -> float:
        value = process_cpu_seconds(pid)
        if value is None:  # gone: its last reading stands
            return self._last_seen.get(pid, 0.0)
        self._last_seen[pid] = value
        return value

    def _read(self) -> dict[str, float]:
        now: dict[str, float] = {}
        for name, pids in self._pids.items():
            now[name] = sum(self._pid_seconds(pid) for pid in pids)
        if self._self:
            times = os.times()
            now[self._self] = times.user + times.system
        return now

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> None:
        if self._started is None:
            raise RuntimeError("CpuMeter.stop() without start()")
        ended = self._read()
        for name, value in ended.items():
            self._totals[name] += max(0.0, value - self._started[name])
        self._started = None

    def totals(self) -> dict[str, float]:
        """CPU seconds per part over every window so far."""
        return {name: round(value, 3) for name, value in self._totals.items()}

    def per_item(self, items: int) -> dict[str, float]:
        """Milliseconds of CPU per item (e.g. per delivered certificate), by part."""
        if items <= 0:
            return dict.fromkeys(self._totals, 0.0)
        return {name: round(1000 * value / items, 2) for name, value in self._totals.items()}
