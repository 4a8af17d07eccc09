"""The per-connector links in a process of their own, driven from the lab's process.

    server = LinkServer(["c1", "c2", "c3"], targets, log_path=run_dir / "links.log")
    server.start()                       # python -m chaos.launch.link_server, ports back
    server.url("c1", "service")          # as ConnectorLinks: select, endpoints, ports, set_all
    server.proxy("c2", "ca:primary").set(LinkFaults(reset=True))   # one JSON line to the child
    server.stats(), server.cpu_s()       # what the proxies forwarded, and what they cost
    server.stop()                        # end of its stdin: it stops its proxies and exits

Why a process: every byte three connectors exchange with the service and the
CAs crosses the proxies, and in the drill's own process those threads wait for
the interpreter lock behind the observer, the workload and the live view; on a
busy machine that showed as slower takeovers (docs/chaos.md, "Links"). The
child does nothing else. Its protocol is one JSON object per line on stdin,
answered by one line on stdout; it exits when its stdin closes (its parent
died or stopped it), so it never outlives the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from chaos.launch._process import LaunchError
from chaos.launch.links import ConnectorLinks, LinkBook
from chaos.launch.proxy import LinkFaults, ProxyStats, Toxics

__all__ = ["LinkServer", "RemoteLink", "faults_from_json", "main"]


def faults_from_json(raw: Mapping[str, Any]) -> LinkFaults:
    return LinkFaults(
        up=Toxics(**raw.get("up", {})),
        down=Toxics(**raw.get("down", {})),
        reset=bool(raw.get("reset", False)),
    )


class RemoteLink:
    """One link of a :class:`LinkServer`: its faults are set in the child."""

    def __init__(self, server: LinkServer, connector: str, target: str, port: int) -> None:
        self.server, self.connector, self.target = server, connector, target
        self.listen_host = "127.0.0.1"
        self.port = port
        self._faults = LinkFaults()

    @property
    def faults(self) -> LinkFaults:
        return self._faults

    def set(self, faults: LinkFaults) -> None:
        self.server.call(
            {"op": "set", "connector": self.connector, "target": self.target,
             "faults": asdict(faults)}
        )  # fmt: skip
        self._faults = faults


class LinkServer(LinkBook[RemoteLink]):
    def __init__(
        self,
        connectors: Sequence[str],
        targets: Mapping[str, str],
        *,
        log_path: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not targets:
            raise ValueError("links need at least one target")
        self.connectors = list(connectors)
        self.targets = dict(targets)
        self.proxies = {}
        self.log_path = log_path
        self.timeout = timeout
        self.process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    @property
    def argv(self) -> list[str]:
        spec = json.dumps({"connectors": self.connectors, "targets": self.targets})
        return [sys.executable, "-m", "chaos.launch.link_server", spec]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        log: IO[str] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("a")
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        if not isinstance(log, int):
            log.close()  # the child holds its own descriptor
        try:
            ports = self._read()["ports"]
        except (LaunchError, KeyError) as exc:
            self.stop()
            raise LaunchError(f"the link server did not start: {exc}") from exc
        self.proxies = {
            c: {t: RemoteLink(self, c, t, int(port)) for t, port in targets.items()}
            for c, targets in ports.items()
        }

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its pid
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> LinkServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, command: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            proc = self.process
            if proc is None or proc.stdin is None:
                raise LaunchError("the link server is not running")
            try:
                proc.stdin.write(json.dumps(command) + "\n")
                proc.stdin.flush()
            except OSError as exc:
                raise LaunchError(f"the link server is gone: {exc}") from exc
            answer = self._read()
        if not answer.get("ok"):
            raise LaunchError(f"the link server refused {command.get('op')}: {answer.get('error')}")
        return answer

    def _read(self) -> dict[str, Any]:
        proc = self.process
        if proc is None or proc.stdout is None:
            raise LaunchError("the link server is not running")
        line = proc.stdout.readline()
        if not line:
            raise LaunchError(f"the link server exited (status {proc.poll()})")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise LaunchError(f"bad answer from the link server: {line[:200]!r}")
        return answer

    def stats(self) -> ProxyStats:
        return ProxyStats(**self.call({"op": "stats"})["stats"])

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the child has used so far."""
        return float(self.call({"op": "stats"})["cpu_s"])


def _answer(links: ConnectorLinks, command: dict[str, Any]) -> dict[str, Any]:
    op = command.get("op")
    if op == "set":
        proxy = links.proxy(str(command["connector"]), str(command["target"]))
        proxy.set(faults_from_json(command["faults"]))
        return {"ok": True}
    if op == "stats":
        times = os.times()
        return {"ok": True, "stats": asdict(links.stats()), "cpu_s": times.user + times.system}
    return {"ok": False, "error": f"unknown op {op!r}"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    links = ConnectorLinks(spec["connectors"], spec["targets"])
    links.start()
    try:
        print(json.dumps({"ok": True, "ports": links.ports()}), flush=True)
        for line in sys.stdin:
            try:
                answer = _answer(links, json.loads(line))
            except (KeyError, TypeError, ValueError) as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        links.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
