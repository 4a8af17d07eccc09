"""The process that holds a running lab for ``pfxha lab up`` until ``pfxha lab down``.

    python -m chaos.lab.supervisor --dir runs/lab --connectors 3 [--prometheus] [--links]

It starts a :class:`~chaos.lab.lab.Lab`, records every pid in ``lab.json``
(status ``up``), and waits. SIGTERM or SIGINT stops the lab in order (each
launcher stops what it started) and records status ``down``. If start-up
fails, everything already started is stopped and the error is recorded
(status ``failed``).

While up it answers fault and heal commands on a Unix socket,
``<dir>/control.sock`` (0600), one JSON object per connection, so tools
outside this process (the Chaos Toolkit actions in :mod:`chaos.ctk`) can
kill and restart what the lab owns without touching pids themselves::

    {"op": "kill-connector", "name": "leader"}   -> {"ok": true, "name": "c2", "pid": 123}
    {"op": "kill-ca", "name": "primary"}
    {"op": "cut-link", "name": "leader", "targets": ["service"], "mode": "blackhole"}
                                                 -> {"ok": true, "name": "c2", "links": [...]}
    {"op": "heal"}                               -> restarts every stopped connector and CA,
                                                    and puts every link back (lab up --links)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.lab.lab import Lab
from chaos.lab.state import LabState, write_state

__all__ = ["CONTROL_SOCKET", "control", "main"]

CONTROL_SOCKET = "control.sock"


def control(run_dir: Path, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one command to the lab's supervisor and return its JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(run_dir / CONTROL_SOCKET))
        sock.sendall(json.dumps(command).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    answer = json.loads(reply)
    if not isinstance(answer, dict):
        raise ValueError(f"bad answer from the lab supervisor: {reply[:200]!r}")
    return answer


_ON_A_CONNECTOR = (
    "kill-connector",
    "stop-connector",
    "pause-connector",
    "resume-connector",
    "cut-link",
)


def _execute(lab: Lab, command: dict[str, Any]) -> dict[str, Any]:
    op = str(command.get("op", ""))
    name = str(command.get("name", ""))
    if op in _ON_A_CONNECTOR and name in ("", "leader"):
        leader = lab.leader().name
        if leader is None:
            return {"ok": False, "error": "nobody leads"}
        name = leader
    if op == "cut-link":
        mode = str(command.get("mode") or "blackhole")
        if mode not in ("blackhole", "reset"):
            return {"ok": False, "error": f"mode must be blackhole or reset, got {mode!r}"}
        targets = tuple(str(t) for t in command.get("targets") or ["service"])
        details = lab.link_cut(name, targets, "reset" if mode == "reset" else "blackhole").inject()
        return {"ok": True, "name": name, "links": details["links"]}
    if op in ("kill-connector", "stop-connector", "pause-connector", "resume-connector"):
        pid = lab.connector_pid(name)
        {
            "kill-connector": lab.kill_connector,
            "stop-connector": lab.terminate_connector,
            "pause-connector": lab.pause_connector,
            "resume-connector": lab.resume_connector,
        }[op](name)
        return {"ok": True, "name": name, "pid": pid}
    if op == "start-connector":
        lab.start_connector(name)
        return {"ok": True, "name": name}
    if op == "kill-ca":
        lab.kill_ca(name)
        return {"ok": True, "name": name}
    if op == "start-ca":
        lab.start_ca(name)
        return {"ok": True, "name": name}
    if op == "heal":
        restarted = []
        for each in lab.cas.names:
            if not lab.cas.running(each):
                lab.start_ca(each)
                restarted.append(each)
        for each in lab.connector_names():
            lab.resume_connector(each)
            if lab.fleet is not None and not lab.fleet.running(each):
                lab.start_connector(each)
                restarted.append(each)
        if lab.links is not None:
            lab.heal_links()
        return {"ok": True, "restarted": restarted}
    return {"ok": False, "error": f"unknown op {op!r}"}


def _serve_control(
    lab: Lab, run_dir: Path, stop: threading.Event, refresh: Callable[[], None]
) -> None:
    path = run_dir / CONTROL_SOCKET
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old_umask)
    server.listen(4)
    server.settimeout(0.5)
    lock = threading.Lock()
    with server:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := conn.recv(65536):
                        data += chunk
                try:
                    with lock:
                        answer = _execute(lab, json.loads(data or b"{}"))
                        refresh()  # restarted processes have new pids
                except Exception as exc:  # report, keep serving
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer).encode())
    path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.lab.supervisor")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--connectors", type=int, default=3)
    parser.add_argument("--prometheus", action="store_true")
    parser.add_argument("--hosts", action="store_true")
    parser.add_argument("--ca", choices=("cfssl", "openbao", "mixed"), default="cfssl")
    # The per-connector fault proxies are threads of this process: they live as long as it.
    parser.add_argument("--links", action="store_true")
    parser.add_argument("--wan-rtt", type=float, default=None)
    parser.add_argument("--wan-jitter", type=float, default=0.0)
    parser.add_argument("--ca-rtt", type=float, default=None)
    parser.add_argument("--zk-rtt", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_dir: Path = args.dir.resolve()
    state = LabState(run_dir=str(run_dir), status="starting", supervisor_pid=os.getpid())
    write_state(state, run_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    lab = Lab(
        run_dir,
        connectors=args.connectors,
        prometheus=args.prometheus,
        hosts=args.hosts,
        ca=args.ca,
        links=args.links,
        wan_rtt=args.wan_rtt,
        wan_jitter=args.wan_jitter,
        ca_rtt=args.ca_rtt,
        zk_rtt=args.zk_rtt,
    )
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

    def refresh() -> None:
        state.processes = lab.processes()
        write_state(state, run_dir)

    threading.Thread(
        target=_serve_control, args=(lab, run_dir, stop, refresh), name="control", daemon=True
    ).start()
    stop.wait()
    logging.info("lab stopping")
    lab.stop()
    state.status = "down"
    write_state(state, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
