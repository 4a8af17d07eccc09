"""Cut one process off from ZooKeeper only, by dropping its packets (no resets).

The leader keeps reaching the service and the CAs; only its traffic to the
ZooKeeper client ports is silently dropped, so its session expires while it
believes, for a while, that it still leads: the zombie the epoch must fence.

How (root, Linux, iptables and cgroup v2, loopback only):

1. the process is moved into its own cgroup v2 ``pfxha-partition-<pid>``;
   an iptables rule drops every packet to the ZooKeeper ports from sockets
   created in that cgroup: its reconnects hang on a dropped SYN;
2. its sockets that already exist (created before the move, so outside the
   cgroup match) are found through ``/proc/<pid>/fd`` and ``/proc/net/tcp``
   and dropped by their port pair, in both directions.

Heal deletes exactly those rules and moves the process back. All rules live
in one chain, ``PFXHA-PARTITION``, reached from OUTPUT on ``lo`` only, and
match only 127.0.0.1 traffic; the chain and its jump go when the last
partition heals.

    cut = ZkPartition(pid, zk_ports=[2181, 2182, 2183])
    cut.inject()
    ...
    cut.heal()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.nemesis.base import FaultError

__all__ = ["CGROUP2_ROOT", "CHAIN", "ZkPartition", "partition_unavailable", "tcp_connections"]

CHAIN = "PFXHA-PARTITION"
CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")
_LOOPBACK = "127.0.0.1"


def _cgroup2_root() -> Path | None:
    for candidate in (CGROUP2_ROOT, Path("/sys/fs/cgroup")):
        if (candidate / "cgroup.procs").exists() and (candidate / "cgroup.controllers").exists():
            return candidate
    return None


def partition_unavailable() -> str | None:
    """Why a partition cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "partition needs root (iptables and cgroups)"
    if shutil.which("iptables") is None:
        return "partition needs iptables (Debian package iptables)"
    if _cgroup2_root() is None:
        return "partition needs a cgroup v2 hierarchy mounted"
    return None


def _iptables(*args: str, check: bool = True) -> bool:
    result = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise FaultError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result.returncode == 0


_CHAIN_LOCK = Path("/run/pfxha-partition.lock")


@contextlib.contextmanager
def _chain_lock() -> Iterator[None]:
    """The shared chain is created, filled, emptied and dropped under a machine-wide
    lock: a heal that finds it empty must not drop it under another run's new rule."""
    with _CHAIN_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_chain() -> None:
    if not _iptables("-n", "-L", CHAIN, check=False):
        _iptables("-N", CHAIN)
    jump = ("OUTPUT", "-o", "lo", "-j", CHAIN)
    if not _iptables("-C", *jump, check=False):
        _iptables("-I", *jump)


def _drop_chain_if_empty() -> None:
    """Leave no trace once the last partition is healed."""
    listing = subprocess.run(
        ["iptables", "-w", "5", "-S", CHAIN], capture_output=True, text=True
    ).stdout.split("\n")
    if any(line.startswith("-A ") for line in listing):
        return
    _iptables("-D", "OUTPUT", "-o", "lo", "-j", CHAIN, check=False)
    _iptables("-X", CHAIN, check=False)


def _hex_endpoint(text: str) -> tuple[str, int]:
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    return ".".join(str(b) for b in reversed(raw)), int(port, 16)


def tcp_connections(pid: int) -> list[tuple[int, int]]:
    """``(local port, remote port)`` of the IPv4 loopback TCP sockets ``pid`` holds."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else []:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: list[tuple[int, int]] = []
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[9] not in inodes:
                continue
            (local_ip, local_port), (remote_ip, remote_port) = (
                _hex_endpoint(fields[1]),
                _hex_endpoint(fields[2]),
            )
            if local_ip == _LOOPBACK and remote_ip == _LOOPBACK and remote_port:
                found.append((local_port, remote_port))
    return found


@dataclass
class ZkPartition:
    """Drop ``pid``'s packets to and from the ZooKeeper client ports until healed."""

    pid: int
    zk_ports: Sequence[int]
    name: str = "partition from ZooKeeper"
    _rules: list[tuple[str, ...]] = field(default_factory=list, init=False)
    _cgroup: Path | None = field(default=None, init=False)

    def inject(self) -> dict[str, Any]:
        reason = partition_unavailable()
        if reason:
            raise FaultError(reason)
        existing: list[tuple[int, int]] = []
        failure: BaseException | None = None
        with _chain_lock():
            _ensure_chain()
            try:
                existing = self._drop_packets()
            except (OSError, FaultError) as exc:
                failure = exc
        if failure is not None:
            self.heal()
            raise FaultError(f"cannot partition pid {self.pid} from ZooKeeper: {failure}")
        return {"pid": self.pid, "zk_ports": list(self.zk_ports), "connections": existing}

    def _drop_packets(self) -> list[tuple[int, int]]:
        """The cgroup's new connections and its open ones to ZooKeeper: dropped."""
        root = _cgroup2_root()
        assert root is not None
        ports = ",".join(str(p) for p in self.zk_ports)
        self._cgroup = root / f"pfxha-partition-{self.pid}"
        self._cgroup.mkdir(exist_ok=True)
        (self._cgroup / "cgroup.procs").write_text(str(self.pid))
        relative = str(self._cgroup.relative_to(root))
        self._add(
            "-p", "tcp", "-d", _LOOPBACK, "-m", "multiport", "--dports", ports,
            "-m", "cgroup", "--path", relative, "-j", "DROP",
        )  # fmt: skip
        zk = set(self.zk_ports)
        existing = [(lp, rp) for lp, rp in tcp_connections(self.pid) if rp in zk]
        for local, remote in existing:
            self._add(
                "-p", "tcp", "-s", _LOOPBACK, "--sport", str(local),
                "-d", _LOOPBACK, "--dport", str(remote), "-j", "DROP",
            )  # fmt: skip
            self._add(
                "-p", "tcp", "-s", _LOOPBACK, "--sport", str(remote),
                "-d", _LOOPBACK, "--dport", str(local), "-j", "DROP",
            )  # fmt: skip
        return existing

    def _add(self, *spec: str) -> None:
        rule = (*spec, "-m", "comment", "--comment", f"pfxha-partition-{self.pid}")
        _iptables("-A", CHAIN, *rule)
        self._rules.append(rule)

    def heal(self) -> None:
        with _chain_lock():
            self._heal()

    def _heal(self) -> None:
        errors: list[str] = []
        while self._rules:
            rule = self._rules.pop()
            if not _iptables("-D", CHAIN, *rule, check=False):
                errors.append(f"could not delete rule {' '.join(rule)}")
        if self._cgroup is not None:
            root = _cgroup2_root()
            if root is not None and Path(f"/proc/{self.pid}").exists():
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(str(self.pid))
            with contextlib.suppress(OSError):
                self._cgroup.rmdir()
            self._cgroup = None
        _drop_chain_if_empty()
        if errors:
            raise FaultError("; ".join(errors))
