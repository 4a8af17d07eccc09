"""Faults of a whole lab host (a network namespace of :mod:`chaos.launch.netns`).

    crash = HostCrash(net, host)          # every process frozen, its link dropped
    crash.inject(); ...; crash.heal()     # link back, processes continued
    cut = HostIsolation(net, host)        # link dropped, processes keep running
    part = HostPartition(host, peers)     # only the packets to/from ``peers`` dropped

Why these and not a kill: a machine that dies (power, kernel panic, a hypervisor
pause) closes no socket and sends no reset; its peers only ever see silence. A
SIGKILL of one process lets the kernel announce the crash at once, which is the
easy case. :class:`HostCrash` freezes every process of the host with SIGSTOP
and drops its link in the same step, so neither the processes nor the kernel
say anything until the heal. On heal the frozen processes wake up as a zombie
leader would after a long pause: the epoch must fence them.

:class:`HostPartition` drops, inside the host, every packet to or from the
given peer addresses (iptables in that namespace, one chain ``PFXHA-HOST``),
so a host can lose its ZooKeeper peers while it still reaches the service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.launch.netns import Host, HostNetwork
from chaos.nemesis.base import FaultError

__all__ = ["HostCrash", "HostIsolation", "HostPartition"]

_CHAIN = "PFXHA-HOST"


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@dataclass
class HostIsolation:
    """The host loses every link; its processes keep running and see only silence."""

    network: HostNetwork
    host: Host
    name: str = ""
    _injected: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"host isolation {self.host.name}"

    def inject(self) -> dict[str, Any]:
        self._injected = True
        self.network.cut(self.host)
        return {"host": self.host.name, "address": self.host.address}

    def heal(self) -> None:
        if self._injected:
            self._injected = False
            self.network.restore(self.host)


@dataclass
class HostCrash(HostIsolation):
    """An isolation whose processes are frozen too; heal brings both back."""

    _frozen: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"host crash {self.host.name}"

    def inject(self) -> dict[str, Any]:
        # Link first: a frozen process whose peers still see a live link would
        # look alive to TCP keepalives for a moment; silence must start at once.
        details = super().inject()
        self._frozen = self.host.pids()
        _signal_all(self._frozen, signal.SIGSTOP)
        return {**details, "frozen": self._frozen}

    def heal(self) -> None:
        if self._injected:
            super().heal()
            _signal_all(self._frozen, signal.SIGCONT)


def _iptables(host: Host, *args: str, check: bool = True) -> bool:
    result = subprocess.run(
        host.wrap(["iptables", "-w", "5", *args]), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise FaultError(f"iptables {' '.join(args)} in {host.name}: {result.stderr.strip()}")
    return result.returncode == 0


@dataclass
class HostPartition:
    """Inside ``host``, drop every packet to or from ``peers`` (addresses); no resets."""

    host: Host
    peers: Sequence[str]
    name: str = ""
    _injected: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"partition {self.host.name} from {', '.join(self.peers)}"

    def inject(self) -> dict[str, Any]:
        self._injected = True
        if not _iptables(self.host, "-n", "-L", _CHAIN, check=False):
            _iptables(self.host, "-N", _CHAIN)
            _iptables(self.host, "-I", "INPUT", "-j", _CHAIN)
            _iptables(self.host, "-I", "OUTPUT", "-j", _CHAIN)
        for peer in self.peers:
            _iptables(self.host, "-A", _CHAIN, "-s", peer, "-j", "DROP")
            _iptables(self.host, "-A", _CHAIN, "-d", peer, "-j", "DROP")
        return {"host": self.host.name, "peers": list(self.peers)}

    def heal(self) -> None:
        if not self._injected:
            return
        self._injected = False
        _iptables(self.host, "-F", _CHAIN)
