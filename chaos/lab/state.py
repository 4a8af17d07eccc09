"""The lab's state file (``<run dir>/lab.json``): who is running, by pid, and where.

Written by the lab supervisor (:mod:`chaos.lab.supervisor`) when the lab is up;
read by ``pfxha lab status`` and ``pfxha lab down``. A pid is only trusted
while ``/proc/<pid>/cmdline`` still shows the command we recorded, so a
recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "STATE_FILE",
    "LabState",
    "ProcessRecord",
    "alive",
    "read_state",
    "stop_processes",
    "write_state",
]

STATE_FILE = "lab.json"


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    argv: list[str]
    log: str = ""


@dataclass
class LabState:
    """``status`` is ``starting``, ``up``, ``failed`` or ``down``."""

    run_dir: str
    status: str
    supervisor_pid: int
    started_at: float = field(default_factory=time.time)
    error: str = ""
    processes: list[ProcessRecord] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)


def write_state(state: LabState, run_dir: Path) -> None:
    path = run_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)  # endpoints may name credential files
    tmp.replace(path)


def read_state(run_dir: Path) -> LabState | None:
    path = run_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable lab state {path}: {exc}") from exc
    raw["processes"] = [ProcessRecord(**p) for p in raw.get("processes", [])]
    return LabState(**raw)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def alive(pid: int, argv: Sequence[str] | None = None) -> bool:
    """True when ``pid`` runs and (if given) still runs the recorded command."""
    if pid <= 0 or _zombie(pid):
        return False
    cmdline = _cmdline(pid)
    if cmdline is None:
        return False
    return argv is None or list(argv) == cmdline


def stop_processes(
    records: Sequence[ProcessRecord],
    *,
    grace: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """SIGTERM each live recorded process (in order), then SIGKILL what is left.

    Returns the names of the processes that had to be killed.
    """
    live = [r for r in records if alive(r.pid, r.argv)]
    for record in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGCONT)  # a paused process must see the SIGTERM
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(r.pid, r.argv) for r in live):
        sleep(0.05)
    killed: list[str] = []
    for record in live:
        if alive(record.pid, record.argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
            killed.append(record.name)
    return killed
