"""SIGHUP runs the CA auth reload on its own thread; SIGTERM/SIGINT handlers stay as they were."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace
from typing import Any, cast

from connector.agent.runtime import Runtime, _signals
from connector.ca import ReloadOutcome


class _Router:
    def __init__(self) -> None:
        self.called = threading.Event()
        self.thread = ""

    def reload_auth(self, specs: Any) -> list[ReloadOutcome]:
        self.thread = threading.current_thread().name
        self.called.set()
        return []


def test_sighup_reloads_on_a_thread_and_the_handler_is_restored() -> None:
    router = _Router()
    runtime = SimpleNamespace(agent=None, router=router, config=SimpleNamespace(cas=()))
    before = signal.getsignal(signal.SIGHUP)
    with _signals(cast(Runtime, runtime)):
        os.kill(os.getpid(), signal.SIGHUP)
        assert router.called.wait(5)
    assert router.thread == "pfxha-ca-auth-reload"
    assert signal.getsignal(signal.SIGHUP) == before
