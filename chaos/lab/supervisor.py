"""The process that holds a running lab for ``pfxha lab up`` until ``pfxha lab down``.

    python -m chaos.lab.supervisor --dir runs/lab --connectors 3 [--prometheus]

It starts a :class:`~chaos.lab.lab.Lab`, records every pid in ``lab.json``
(status ``up``), and waits. SIGTERM or SIGINT stops the lab in order (each
launcher stops what it started) and records status ``down``. If start-up
fails, everything already started is stopped and the error is recorded
(status ``failed``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from chaos.lab.lab import Lab
from chaos.lab.state import LabState, write_state

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.lab.supervisor")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--connectors", type=int, default=3)
    parser.add_argument("--prometheus", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_dir: Path = args.dir.resolve()
    state = LabState(run_dir=str(run_dir), status="starting", supervisor_pid=os.getpid())
    write_state(state, run_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    lab = Lab(run_dir, connectors=args.connectors, prometheus=args.prometheus)
    try:
        lab.start()
    except Exception as exc:
        logging.exception("lab start failed")
        state.status, state.error = "failed", str(exc)
        write_state(state, run_dir)
        return 1
    state.status = "up"
    state.processes = lab.processes()
    state.endpoints = lab.endpoints()
    write_state(state, run_dir)
    logging.info("lab up: %d processes", len(state.processes))
    stop.wait()
    logging.info("lab stopping")
    lab.stop()
    state.status = "down"
    write_state(state, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
