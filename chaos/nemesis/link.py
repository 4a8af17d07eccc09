"""Gray faults: one connector's links to the service or its CAs cut, the rest intact.

    cut = LinkCut(lab.links, "c2", ("service",), "blackhole")  # c2's bytes to the service vanish
    cut.inject(); ...; cut.heal()                              # the links' earlier faults back
    LinkCut(lab.links, "c2", ("ca:*",), "reset")              # every CA call of c2 gets an RST
    LinkSlow(lab.links, "c2", ("service",), rtt_s=0.4)         # 0.4 s more round trip for c2
    cascade = Cascade("c1", leader=lab.leader_now, above_epoch=7,
                      cut=lambda n: lab.link_cut(n, ("service",), "blackhole"))
    cascade.inject()   # cut c1 now; the next member that leads is cut as soon as it leads
    cascade.heal()     # stop watching, heal every cut (newest first)

The links are the per-connector fault proxies of :mod:`chaos.launch.links`:
ZooKeeper is untouched, so the election sees a healthy member while its work
fails (a gray failure). ``blackhole`` reads and drops both ways on open and new
connections (the peer sees silence until its own timeout); ``reset`` answers
every connection with an RST (a refused or dropped link, seen at once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from chaos.launch.links import LinkHandle
from chaos.launch.proxy import LinkFaults
from chaos.nemesis.base import Fault, FaultError

__all__ = ["Cascade", "CutMode", "LinkCut", "LinkSet", "LinkSlow", "cut_faults", "slow_faults"]

log = logging.getLogger(__name__)

CutMode = Literal["blackhole", "reset"]


class LinkSet(Protocol):
    """What :class:`LinkCut` needs (``ConnectorLinks``, or ``LinkServer`` in its own process)."""

    def select(self, connector: str, pattern: str) -> Mapping[str, LinkHandle]: ...


def cut_faults(before: LinkFaults, mode: CutMode) -> LinkFaults:
    """``before`` with the cut added; latency and rates stay for the heal to find."""
    if mode == "reset":
        return replace(before, reset=True)
    return replace(
        before,
        up=replace(before.up, blackhole=True),
        down=replace(before.down, blackhole=True),
    )


def slow_faults(before: LinkFaults, rtt_s: float) -> LinkFaults:
    """``before`` with ``rtt_s`` more round trip, half each way (a latency spike)."""
    if rtt_s <= 0:
        raise ValueError(f"a latency spike must add more than 0 s, got {rtt_s}")
    return replace(
        before,
        up=replace(before.up, latency_s=before.up.latency_s + rtt_s / 2),
        down=replace(before.down, latency_s=before.down.latency_s + rtt_s / 2),
    )


@dataclass
class LinkCut:
    """Cut ``connector``'s links whose targets match any of ``targets`` (fnmatch patterns)."""

    links: LinkSet
    connector: str
    targets: Sequence[str] = ("service",)
    mode: CutMode = "blackhole"
    name: str = ""
    _saved: dict[str, tuple[LinkHandle, LinkFaults]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("blackhole", "reset"):
            raise ValueError(f"mode must be blackhole or reset, got {self.mode!r}")
        if not self.targets:
            raise ValueError("a link cut needs at least one target")
        self.name = self.name or f"{self.mode} {self.connector} -> {', '.join(self.targets)}"

    def _select(self) -> dict[str, LinkHandle]:
        chosen: dict[str, LinkHandle] = {}
        for pattern in self.targets:
            try:
                chosen.update(self.links.select(self.connector, pattern))
            except KeyError as exc:
                raise FaultError(f"{self.name}: {exc.args[0]}") from exc
        return chosen

    def inject(self) -> dict[str, Any]:
        chosen = self._select()  # all found before any is cut: no half-applied fault
        for target, proxy in chosen.items():
            if target not in self._saved:
                self._saved[target] = (proxy, proxy.faults)
            proxy.set(self._apply(self._saved[target][1]))
        return {"connector": self.connector, "mode": self.mode, "links": sorted(chosen)}

    def _apply(self, before: LinkFaults) -> LinkFaults:
        return cut_faults(before, self.mode)

    def heal(self) -> None:
        while self._saved:
            _, (proxy, before) = self._saved.popitem()
            proxy.set(before)


@dataclass
class LinkSlow(LinkCut):
    """Add ``rtt_s`` of round trip to ``connector``'s links matching ``targets``; heal restores."""

    rtt_s: float = 0.2

    def __post_init__(self) -> None:
        slow_faults(LinkFaults(), self.rtt_s)  # refuses a spike of nothing
        self.name = self.name or f"+{self.rtt_s:g} s {self.connector} -> {', '.join(self.targets)}"
        super().__post_init__()

    def _apply(self, before: LinkFaults) -> LinkFaults:
        return slow_faults(before, self.rtt_s)

    def inject(self) -> dict[str, Any]:
        return {**super().inject(), "mode": "latency", "rtt_s": self.rtt_s}


@dataclass
class Cascade:
    """Cut ``first``; the first other member to lead above ``above_epoch`` is cut too.

    ``leader()`` returns ``(name, epoch)`` of the current leader (``(None, None)``
    when nobody leads) and must be cheap: it is polled every ``poll_s`` until
    the second cut or the heal. ``cut(name)`` builds the fault for one member.
    """

    first: str
    leader: Callable[[], tuple[str | None, int | None]]
    cut: Callable[[str], Fault]
    above_epoch: int
    poll_s: float = 0.02
    name: str = ""
    cuts: list[tuple[str, Fault]] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"cascade from {self.first}"

    @property
    def victims(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.cuts]

    def inject(self) -> dict[str, Any]:
        self._stop.clear()
        self._cut(self.first)
        self._thread = threading.Thread(target=self._watch, name="cascade", daemon=True)
        self._thread.start()
        return {"first": self.first, "above_epoch": self.above_epoch}

    def _cut(self, name: str) -> None:
        fault = self.cut(name)
        with self._lock:
            if self._stop.is_set():
                return
            fault.inject()
            self.cuts.append((name, fault))

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                name, epoch = self.leader()
            except Exception:  # ZooKeeper busy: look again
                log.debug("cascade: reading the leader failed", exc_info=True)
                continue
            if name is not None and name != self.first and (epoch or 0) > self.above_epoch:
                log.info("cascade: %s leads (epoch %s): cutting it too", name, epoch)
                try:
                    self._cut(name)
                except Exception:
                    log.exception("cascade: cutting %s failed", name)
                return

    def heal(self) -> None:
        with self._lock:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        errors: list[str] = []
        while self.cuts:
            name, fault = self.cuts.pop()
            try:
                fault.heal()
            except Exception as exc:  # heal every cut even if one fails
                errors.append(f"{name}: {exc}")
        if errors:
            raise FaultError(f"{self.name}: heal failed: " + "; ".join(errors))
