"""Helpers for the election integration tests: recording observers, electors, member processes."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kazoo.client import KazooClient

from chaos.launch import ManagedProcess, wait_for
from election import ElectionConfig, ElectionObserver, Elector, Role, read_cluster_status

ClientFactory = Callable[..., KazooClient]
"""The ``zk_client`` fixture: a started kazoo client, closed at teardown."""


@dataclass
class Recorder(ElectionObserver):
    """Records every callback with a monotonic timestamp."""

    events: list[tuple[float, str, object]] = field(default_factory=list)
    elected: threading.Event = field(default_factory=threading.Event)
    demoted: threading.Event = field(default_factory=threading.Event)

    def on_elected(self, epoch: int) -> None:
        self.events.append((time.monotonic(), "elected", epoch))
        self.elected.set()

    def on_demoted(self, reason: str) -> None:
        self.events.append((time.monotonic(), "demoted", reason))
        self.demoted.set()

    def on_role_change(self, old: Role, new: Role, reason: str) -> None:
        self.events.append((time.monotonic(), "role", (old, new, reason)))

    def on_coordination_problem(self, kind: str, detail: str) -> None:
        self.events.append((time.monotonic(), "tampered", kind))

    def times(self, kind: str) -> list[float]:
        return [t for t, k, _ in self.events if k == kind]

    def epochs(self) -> list[int]:
        return [v for _, k, v in self.events if k == "elected" and isinstance(v, int)]


class Pool:
    """In-process electors of one cluster, stopped at teardown."""

    def __init__(self, hosts: str, cluster: str) -> None:
        self.hosts = hosts
        self.cluster = cluster
        self.electors: dict[str, Elector] = {}
        self.recorders: dict[str, Recorder] = {}

    def add(self, name: str, *, start: bool = True, **kw: object) -> Elector:
        kw.setdefault("hosts", self.hosts)
        kw.setdefault("session_timeout", 1.0)
        config = ElectionConfig(cluster=self.cluster, name=name, **kw)  # type: ignore[arg-type]
        recorder = Recorder()
        elector = Elector(config, observers=[recorder])
        self.electors[name] = elector
        self.recorders[name] = recorder
        if start:
            elector.start()
        return elector

    def leaders(self) -> list[str]:
        return [n for n, e in self.electors.items() if e.fresh_epoch() is not None]

    def wait_leader(self, timeout: float = 10.0, exclude: str | None = None) -> str:
        found: list[str] = []

        def one() -> bool:
            found[:] = [n for n in self.leaders() if n != exclude]
            return len(found) == 1

        wait_for(one, timeout=timeout, what="exactly one fresh leader")
        return found[0]

    def stop(self) -> None:
        for elector in self.electors.values():
            with contextlib.suppress(Exception):
                elector.stop()


class Members:
    """Election members as separate OS processes (``python -m chaos.bench._member``)."""

    def __init__(self, hosts: str, cluster: str, run_dir: Path) -> None:
        self.hosts = hosts
        self.cluster = cluster
        self.run_dir = run_dir
        self.procs: dict[str, ManagedProcess] = {}

    def start(self, name: str, *extra: str) -> ManagedProcess:
        argv = [
            sys.executable, "-m", "chaos.bench._member",
            "--hosts", self.hosts, "--cluster", self.cluster, "--name", name,
            "--session-timeout", "1.0", *extra,
        ]  # fmt: skip
        proc = ManagedProcess(
            name, argv, log_path=self.run_dir / f"{name}.log", cwd=Path.cwd(),
            env={"PYTHONPATH": str(Path.cwd())},
        )  # fmt: skip
        proc.start()
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()


def leader_of(client: KazooClient, cluster: str) -> tuple[str, int] | None:
    status = read_cluster_status(client, cluster)
    return (status.leader.name, status.leader.epoch) if status.leader else None


def wait_leader_in_zk(
    client: KazooClient,
    cluster: str,
    *,
    timeout: float = 10.0,
    accept: Callable[[tuple[str, int]], bool] = lambda _: True,
) -> tuple[str, int]:
    found: list[tuple[str, int]] = []

    def check() -> bool:
        leader = leader_of(client, cluster)
        if leader is not None and accept(leader):
            found.append(leader)
            return True
        return False

    wait_for(check, timeout=timeout, what=f"a leader of {cluster} in ZooKeeper", interval=0.005)
    return found[-1]


def wait_line(client: KazooClient, cluster: str, size: int, timeout: float = 10.0) -> None:
    wait_for(
        lambda: len(read_cluster_status(client, cluster).line) == size,
        timeout=timeout,
        what=f"{size} members in the election line",
    )


def wait_armed(
    client: KazooClient, cluster: str, standbys: set[str], timeout: float = 10.0
) -> None:
    """Until each of ``standbys`` publishes a verified connection to the leader's liveness
    socket: before it, a crash of the leader is noticed by the session timeout only."""

    def armed() -> bool:
        seen = {m.name: m.fast_path for m in read_cluster_status(client, cluster).members}
        return all(seen.get(name) == "armed" for name in standbys)

    wait_for(armed, timeout=timeout, what=f"fast path armed on {sorted(standbys)}")


def kill(proc: ManagedProcess, signum: int = signal.SIGKILL) -> None:
    assert proc.pid is not None
    os.kill(proc.pid, signum)
