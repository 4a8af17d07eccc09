"""``pfxha bench election``: failover and handover times, measured from the outside.

    pfxha bench election --members 3 --rounds 20 --session-timeout 1.0 \
        --mode crash,graceful,pause --json runs/bench-election.json [--no-fast-path]

Members run as separate OS processes (``python -m chaos.bench._member``) against a
3-node ZooKeeper ensemble started for the run. Each round stops the current leader
with SIGKILL (crash), SIGTERM (graceful) or SIGSTOP (pause; SIGCONT after the
handover) and measures, on an independent watcher's clock, from the signal to the
moment another member holds the lease and has written ``/leader``.

Two independent safety checks run throughout:

- the watcher's own ZooKeeper client records every ``/leader`` it sees: epochs must
  strictly increase (``epochs_strictly_increasing``);
- while ``fresh_epoch()`` returns an epoch, a member sends a UDP "claim" every few
  milliseconds (the stand-in for a side effect), stamped with the monotonic time
  it found its lease fresh. A claim with a lower epoch found fresh after the higher
  epoch's first claim was means two members acted as leader at once
  (``dual_leader_observations``; fencing would reject the older one). One found
  fresh before it but delivered after (its sender paused between the check and
  the send) is only counted (``late_claims``): no overlap.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shlex
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from kazoo.client import KazooClient
from rich.console import Console
from rich.table import Table

from chaos.bench._stats import summarize
from chaos.launch import LaunchError, ManagedProcess, wait_for
from chaos.launch.zookeeper import ZooKeeperEnsemble
from election import ClusterPaths, LeaderInfo

__all__ = ["BenchSettings", "command", "run_election_bench"]

MODES = ("crash", "graceful", "pause")
_RESULT_KEYS = {
    "crash": "crash_failover_s",
    "graceful": "graceful_handover_s",
    "pause": "pause_failover_s",
}


def targets(fast_path: bool) -> dict[str, float]:
    """p99 targets (seconds) from the issue, for a 1.0 s session timeout."""
    return {"crash": 0.1 if fast_path else 1.2, "graceful": 0.05, "pause": 1.5}


@dataclass
class BenchSettings:
    members: int = 3
    rounds: int = 20
    session_timeout: float = 1.0
    fast_path: bool = True
    modes: Sequence[str] = MODES
    run_dir: Path | None = None
    hosts: str | None = None
    zk_size: int = 3
    settle_s: float = 0.3
    round_timeout_s: float = 15.0
    seed: int | None = None
    progress: bool = False


def is_overlap(stale_checked: float | None, newer_checked: float | None) -> bool:
    """Did a member find its (older) lease fresh after a newer leader had found its own?

    Both times are ``time.monotonic()`` of one machine. A claim checked before the
    newer epoch's first one and delivered later (its sender was paused between the
    check and the send) shows no two leaders at once. Without times: an overlap.
    """
    if stale_checked is None or newer_checked is None:
        return True
    return stale_checked >= newer_checked


class ClaimCollector:
    """Receives the members' UDP claims and counts claims from a superseded epoch."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.claims = 0
        self.max_epoch = 0
        self.max_epoch_holder = ""
        self.max_epoch_checked: float | None = None  # when its holder first found it fresh
        self.late = 0  # stale claims whose check came before the newer epoch's: no overlap
        self.dual: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-claims", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                claim = json.loads(data)
                name, epoch = str(claim["name"]), int(claim["epoch"])
            except (ValueError, KeyError, TypeError):
                continue
            self.claims += 1
            checked = claim.get("checked")
            checked = float(checked) if isinstance(checked, int | float) else None
            if epoch > self.max_epoch:
                self.max_epoch, self.max_epoch_holder = epoch, name
                self.max_epoch_checked = checked
            elif epoch < self.max_epoch:
                if is_overlap(checked, self.max_epoch_checked):
                    self.dual.append(
                        {"stale": name, "epoch": epoch, "current": self.max_epoch_holder,
                         "current_epoch": self.max_epoch}
                    )  # fmt: skip
                else:
                    self.late += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class LeaderWatcher:
    """An independent client's view of ``/leader``: every change with its arrival time."""

    client: KazooClient
    path: str
    history: list[tuple[float, LeaderInfo | None]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        self.client.DataWatch(self.path, self._on_change)

    def _on_change(self, data: bytes | None, stat: Any) -> None:
        now = time.monotonic()
        info = LeaderInfo.parse(data, czxid=stat.czxid) if data and stat else None
        with self.changed:
            self.history.append((now, info))
            self.changed.notify_all()

    def current(self) -> LeaderInfo | None:
        with self.changed:
            return self.history[-1][1] if self.history else None

    def wait_successor(self, victim: LeaderInfo, timeout: float) -> tuple[float, LeaderInfo]:
        """First time a leader with a higher epoch, other than ``victim``, was seen."""
        deadline = time.monotonic() + timeout
        with self.changed:
            seen = 0
            while True:
                for when, info in self.history[seen:]:
                    if info is not None and info.epoch > victim.epoch and info.name != victim.name:
                        return when, info
                seen = len(self.history)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LaunchError(f"no successor to {victim.name} within {timeout:.0f}s")
                self.changed.wait(remaining)

    def epochs(self) -> list[int]:
        """Distinct leaderships in the order seen (consecutive repeats collapsed)."""
        out: list[int] = []
        with self.changed:
            for _, info in self.history:
                if info is not None and (not out or out[-1] != info.epoch):
                    out.append(info.epoch)
        return out


class MemberSet:
    def __init__(
        self, settings: BenchSettings, hosts: str, cluster: str, claims: str, run_dir: Path
    ):
        self.settings = settings
        self.hosts = hosts
        self.cluster = cluster
        self.claims = claims
        self.run_dir = run_dir
        self.procs: dict[str, ManagedProcess] = {}

    def start(self, name: str) -> None:
        argv = [
            sys.executable, "-m", "chaos.bench._member",
            "--hosts", self.hosts, "--cluster", self.cluster, "--name", name,
            "--session-timeout", str(self.settings.session_timeout), "--claims", self.claims,
        ]  # fmt: skip
        if not self.settings.fast_path:
            argv.append("--no-fast-path")
        proc = self.procs.get(name) or ManagedProcess(
            name, argv, log_path=self.run_dir / f"member-{name}.log", cwd=Path.cwd()
        )
        self.procs[name] = proc
        proc.start()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop(grace=5)


def _exited(proc: ManagedProcess) -> Callable[[], bool]:
    return lambda: not proc.running()


def run_election_bench(settings: BenchSettings) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result."""
    rng = random.Random(settings.seed)
    run_dir = settings.run_dir or Path(tempfile.mkdtemp(prefix="pfxha-bench-election-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cluster = f"bench{os.getpid()}{int(time.time()) % 100000}"
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        hosts = settings.hosts
        if hosts is None:
            ensemble = ZooKeeperEnsemble(run_dir / "zk", size=settings.zk_size)
            stack.enter_context(ensemble)
            hosts = ensemble.hosts
        watcher_client = KazooClient(hosts=hosts, timeout=5.0)
        watcher_client.start(timeout=15)
        stack.callback(watcher_client.close)
        stack.callback(watcher_client.stop)
        paths = ClusterPaths(cluster)
        watcher = LeaderWatcher(watcher_client, paths.leader)
        watcher.start()
        claims = ClaimCollector()
        stack.callback(claims.close)
        members = MemberSet(settings, hosts, cluster, claims.address, run_dir)
        stack.callback(members.stop_all)
        names = [f"m{i + 1}" for i in range(settings.members)]
        for name in names:
            members.start(name)

        def stable() -> bool:
            leader = watcher.current()
            if leader is None or not all(p.running() for p in members.procs.values()):
                return False
            try:
                line = watcher_client.get_children(paths.election)
            except Exception:
                return False
            return len(line) == settings.members

        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        per_round: list[dict[str, Any]] = []
        plan = [
            (mode if mode != "random" else rng.choice(MODES))
            for mode in settings.modes
            for _ in range(settings.rounds)
        ]
        for number, mode in enumerate(plan, start=1):
            wait_for(stable, timeout=30, what="a stable cluster (leader + full line)")
            time.sleep(settings.settle_s)  # standbys' liveness probes connect
            victim = watcher.current()
            assert victim is not None
            proc = members.procs[victim.name]
            signum = {"crash": signal.SIGKILL, "graceful": signal.SIGTERM, "pause": signal.SIGSTOP}
            signalled_at = time.monotonic()
            proc.signal(signum[mode])
            seen_at, successor = watcher.wait_successor(victim, settings.round_timeout_s)
            seconds = seen_at - signalled_at
            samples[mode].append(seconds)
            per_round.append(
                {"round": number, "mode": mode, "victim": victim.name, "old_epoch": victim.epoch,
                 "successor": successor.name, "new_epoch": successor.epoch,
                 "seconds": round(seconds, 4)}
            )  # fmt: skip
            if settings.progress:
                click.echo(
                    f"round {number:3d}/{len(plan)} {mode:8s} {victim.name}->{successor.name} "
                    f"epoch {victim.epoch}->{successor.epoch} {seconds * 1000:8.1f} ms",
                    err=True,
                )
            if mode == "pause":
                proc.resume()
            else:
                if mode == "crash":
                    proc.kill()  # reap
                else:
                    wait_for(_exited(proc), timeout=10, what="graceful exit")
                members.start(victim.name)
        wait_for(stable, timeout=30, what="a stable cluster after the last round")
        time.sleep(settings.settle_s)
    epochs = watcher.epochs()
    result: dict[str, Any] = {
        "rounds": settings.rounds,
        "members": settings.members,
        "modes": list(settings.modes),
        "session_timeout_s": settings.session_timeout,
        "fast_path": settings.fast_path,
        "zookeeper_nodes": settings.zk_size if settings.hosts is None else None,
        **{_RESULT_KEYS[mode]: summarize(samples[mode]) for mode in MODES},
        "dual_leader_observations": len(claims.dual),
        "dual_leader_details": claims.dual[:20],
        "epochs_strictly_increasing": all(a < b for a, b in itertools.pairwise(epochs)),
        "leaderships_observed": len(epochs),
        "claims_received": claims.claims,
        "late_claims": claims.late,
        "targets_p99_s": targets(settings.fast_path),
        "per_round": per_round,
        "duration_s": round(time.monotonic() - started, 2),
        "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)},
        "run_dir": str(run_dir),
    }
    return result


def print_table(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    fast = "fast path on" if result["fast_path"] else "fast path OFF (session timeout only)"
    table = Table(
        title=f"election failover, {result['members']} members, session "
        f"{result['session_timeout_s']} s, {fast}"
    )
    for column in ("mode", "n", "p50 ms", "p99 ms", "max ms", "target p99", "verdict"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode in MODES:
        stats = result[_RESULT_KEYS[mode]]
        if not stats["n"]:
            continue
        target = result["targets_p99_s"][mode]
        ok = stats["p99"] <= target
        table.add_row(
            mode,
            str(stats["n"]),
            f"{stats['p50'] * 1000:.1f}",
            f"{stats['p99'] * 1000:.1f}",
            f"{stats['max'] * 1000:.1f}",
            f"<= {target * 1000:.0f} ms",
            "[green]met[/]" if ok else "[red]missed[/]",
        )
    console.print(table)
    dual = result["dual_leader_observations"]
    console.print(
        f"dual leader observations: {'[green]0[/]' if dual == 0 else f'[red]{dual}[/]'}; "
        f"epochs strictly increasing: {result['epochs_strictly_increasing']} "
        f"({result['leaderships_observed']} leaderships, {result['claims_received']} claims)"
    )


@click.command("election")
@click.option("--members", default=3, show_default=True, help="Member processes.")
@click.option("--rounds", default=20, show_default=True, help="Rounds per mode.")
@click.option("--session-timeout", default=1.0, show_default=True, help="Seconds.")
@click.option("--fast-path/--no-fast-path", default=True, show_default=True)
@click.option(
    "--mode",
    "modes",
    default="crash,graceful,pause",
    show_default=True,
    help="Comma list of crash, graceful, pause, random.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hosts", default=None, help="Use this ZooKeeper instead of starting 3 nodes.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--seed", type=int, default=None, help="Seed for --mode random.")
def command(
    members: int,
    rounds: int,
    session_timeout: float,
    fast_path: bool,
    modes: str,
    json_path: Path | None,
    hosts: str | None,
    run_dir: Path | None,
    seed: int | None,
) -> None:
    """Kill, stop or pause the leader N times; measure failover from the outside."""
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in (*MODES, "random")]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown mode(s) {unknown}", param_hint="--mode")
    if members < 2:
        raise click.BadParameter("need at least 2 members", param_hint="--members")
    settings = BenchSettings(
        members=members,
        rounds=rounds,
        session_timeout=session_timeout,
        fast_path=fast_path,
        modes=chosen,
        run_dir=run_dir,
        hosts=hosts,
        seed=seed,
        progress=True,
    )
    try:
        result = run_election_bench(settings)
    except LaunchError as exc:
        raise click.ClickException(str(exc)) from exc
    result["command"] = shlex.join(["pfxha", *sys.argv[1:]]) if sys.argv else ""
    print_table(result)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {json_path}", err=True)
    if result["dual_leader_observations"] or not result["epochs_strictly_increasing"]:
        raise SystemExit(1)
