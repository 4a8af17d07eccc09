"""A Ctrl-C (or the drill's SIGTERM) that lands while a lab process is being spawned
never leaves a child nobody knows of.

The Python handlers of SIGINT and SIGTERM raise in the main thread, between any two
bytecodes: one raised inside ``subprocess.Popen``, after the fork, used to leave the
child running untracked (the e2e SIGTERM test found a lab process alive after the
drill had stopped its lab).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.launch import ManagedProcess
from chaos.launch._process import _interrupts_held


class SignalledError(Exception):
    pass


def _raise(signum: int, _frame: object) -> None:
    raise SignalledError(signum)


@pytest.fixture
def raising_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupt_inside_the_block_is_delivered_at_its_end(raising_sigterm: None) -> None:
    reached: list[str] = []

    def signalled_inside() -> None:
        with _interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("the end of the block")

    with pytest.raises(SignalledError):
        signalled_inside()
    assert reached == ["the end of the block"]
    # The handler is ours again.
    with pytest.raises(SignalledError):
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_landing_right_after_the_fork_leaves_the_child_tracked(
    raising_sigterm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # the child runs; Popen has not returned
        return child

    monkeypatch.setattr(subprocess, "Popen", popen_then_signal)
    proc = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "sleeper.log",
    )
    try:
        with pytest.raises(SignalledError):
            proc.start()
        assert proc.pid is not None
        assert proc.running()
    finally:
        proc.stop(grace=5)
    assert not proc.running()
