from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chaos.drill.scenarios import ALL, SCENARIOS, parse_scenarios
from chaos.lab.state import LabState, ProcessRecord, alive, read_state, write_state


def test_parse_scenarios_keeps_order_and_knows_all() -> None:
    assert [s.name for s in parse_scenarios("ca-down, connector-down")] == [
        "ca-down",
        "connector-down",
    ]
    assert [s.name for s in parse_scenarios("all")] == ALL
    assert {"connector-down", "ca-down", "both-down", "partition", "zk-quorum-loss"} <= set(ALL)
    # + intruder (issue 8), + five gray failures (issue 13), + the two hung-CA scenarios
    assert len(ALL) == 18
    with pytest.raises(ValueError, match="unknown scenario"):
        parse_scenarios("connector-down,meteor")
    with pytest.raises(ValueError, match="none given"):
        parse_scenarios(" , ")


def test_scenario_kinds_decide_the_measurement() -> None:
    assert SCENARIOS["ca-down"].kind == "ca"
    assert SCENARIOS["zk-quorum-loss"].kind == "blocking"
    assert SCENARIOS["ca-all-down"].hold_s > 0
    assert all(SCENARIOS[n].kind == "leader" for n in ("connector-down", "both-down", "pause"))


def test_state_round_trip_is_private(tmp_path: Path) -> None:
    state = LabState(
        run_dir=str(tmp_path),
        status="up",
        supervisor_pid=os.getpid(),
        processes=[ProcessRecord("zk1", 123, ["java", "-cp", "x"], "zk1.log")],
        endpoints={"zookeeper": "127.0.0.1:2181"},
    )
    write_state(state, tmp_path)
    assert read_state(tmp_path) == state
    assert (tmp_path / "lab.json").stat().st_mode & 0o077 == 0
    assert read_state(tmp_path / "nothing") is None


def test_alive_checks_the_command_not_just_the_pid() -> None:
    argv = [sys.executable, "-c", "import sys, time; print('up', flush=True); time.sleep(30)"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        # Until the child has exec'd, /proc/<pid>/cmdline still shows the forking
        # parent's command; the child's first line proves the exec happened.
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        assert alive(proc.pid)
        assert alive(proc.pid, argv)
        assert not alive(proc.pid, ["java", "something-else"])
    finally:
        proc.kill()
        proc.wait()
    assert not alive(proc.pid, argv)


class _SlowReapLab:
    """kill_connector blocks until released, as a reap on a loaded machine can."""

    def __init__(self) -> None:
        self.killing = threading.Event()
        self.reaped = threading.Event()
        self.started: list[str] = []

    def connector_pid(self, name: str) -> int:
        return 4242

    def kill_connector(self, name: str) -> None:
        self.killing.set()
        assert self.reaped.wait(10)

    def start_connector(self, name: str) -> None:
        assert self.reaped.is_set(), "restarted before the old process was reaped"
        self.started.append(name)


def test_connector_down_returns_before_the_reap_and_heals_after_it() -> None:
    """The workload's burst goes out at the fault, not once the killed process is reaped."""
    lab = _SlowReapLab()
    fault = SCENARIOS["connector-down"].build(lab, "c1")  # type: ignore[arg-type]
    assert fault.inject() == {"connector": "c1", "pid": 4242}
    assert lab.killing.wait(10)
    assert not lab.reaped.is_set()  # inject returned while the kill still waits
    healing = threading.Thread(target=fault.heal)
    healing.start()
    lab.reaped.set()
    healing.join(10)
    assert lab.started == ["c1"]
