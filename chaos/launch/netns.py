"""Lab "hosts": network namespaces on a private bridge, each with its own address and loopback.

    net = HostNetwork.create(run_dir)                # bridge + a record file under run_dir
    zk1 = net.add_host("zk1")                         # namespace, veth pair, 198.18.N.x/24
    ManagedProcess("zk1", zk1.wrap(["java", ...]), log_path=...)   # runs inside zk1
    zk1.address                                       # "198.18.N.2": what others dial
    net.cut(zk1); net.restore(zk1)                    # its link drops every packet, no RST
    net.destroy()                                     # everything the record names, gone
    HostNetwork.sweep(run_dir)                        # same, from the record, after a crash

Every host is a namespace ``px<lab>-<host>`` joined to the bridge ``px<lab>br`` by a
veth pair. The bridge has the address ``.1`` in the root namespace, so the harness
(the drill, the checkers) reaches every host; nothing is routed anywhere else: no
default route in any namespace, no forwarding, no NAT. Addresses come from
198.18.0.0/15 (RFC 2544, reserved for benchmarking networks), one /24 per lab,
chosen so that two labs on this machine never share one.

A cut sets the bridge side of the host's veth down: the host's packets are dropped
by a link without carrier, so peers see silence, never a reset (the "server died"
case, unlike killing a process). ``ip netns exec`` replaces itself with the
command, so the pid a :class:`~chaos.launch._process.ManagedProcess` holds is the
server's own pid.

Every namespace and link is written to ``<run_dir>/network.json`` *before* it is
created, so :meth:`HostNetwork.sweep` removes what a crashed supervisor left.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["NETWORK_FILE", "Host", "HostNetwork", "NetnsError", "netns_unavailable"]

NETWORK_FILE = "network.json"
_SUPERNET = ipaddress.ip_network("198.18.0.0/15")
_LOCK = Path("/run/pfxha-netns.lock")


class NetnsError(RuntimeError):
    """A namespace, link or address could not be made or removed; the message says which."""


@functools.cache
def netns_unavailable() -> str | None:
    """Why hosts cannot be made on this machine, or None when they can (asked once)."""
    if os.geteuid() != 0:
        return "hosts need root (network namespaces and veth links)"
    if shutil.which("ip") is None:
        return "hosts need iproute2's ip (Debian package iproute2)"
    probe = f"pxprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Host:
    """One lab host: a namespace, its address on the bridge, and the veth that joins it."""

    name: str
    netns: str
    address: str
    link: str  # the bridge side of the veth pair (cut/restore act on it)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (same pid: ``ip netns exec`` execs the command)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def pids(self) -> list[int]:
        """Every process that lives in this host's namespace."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if p.isdigit()]


@dataclass
class _Record:
    lab: str
    bridge: str
    subnet: str
    hosts: list[dict[str, str]] = field(default_factory=list)


class HostNetwork:
    """The lab's bridge and hosts; see the module docstring."""

    def __init__(self, run_dir: Path, record: _Record) -> None:
        self.run_dir = run_dir
        self._record = record
        self.hosts: dict[str, Host] = {h["name"]: Host(**h) for h in record.hosts}

    # -- creation ---------------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: Path) -> HostNetwork:
        """A new bridge with its own /24; leftovers of an earlier lab in ``run_dir`` go first."""
        why = netns_unavailable()
        if why is not None:
            raise NetnsError(why)
        run_dir.mkdir(parents=True, exist_ok=True)
        cls.sweep(run_dir)
        lab = secrets.token_hex(2)
        # The subnet is picked under a machine-wide lock so that two labs starting
        # at once (tests in parallel) cannot both take the same free /24.
        with _LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = _free_subnet()
            record = _Record(lab=lab, bridge=f"px{lab}br", subnet=str(subnet))
            net = cls(run_dir, record)
            net._save()
            _ip("link", "add", record.bridge, "type", "bridge")
            _ip("addr", "add", f"{net.gateway}/{subnet.prefixlen}", "dev", record.bridge)
            _ip("link", "set", record.bridge, "up")
        return net

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace: where the harness sits."""
        return str(next(ipaddress.ip_network(self._record.subnet).hosts()))

    def add_host(self, name: str) -> Host:
        """A namespace joined to the bridge, with loopback up and the next free address."""
        if name in self.hosts:
            raise NetnsError(f"host {name!r} exists already")
        subnet = ipaddress.ip_network(self._record.subnet)
        index = len(self.hosts) + 2  # .1 is the bridge
        if index >= subnet.num_addresses - 1:
            raise NetnsError(f"no address left in {subnet} for host {name!r}")
        address = str(subnet.network_address + index)
        lab = self._record.lab
        host = Host(
            name=name,
            netns=f"px{lab}-{name}",
            address=address,
            link=f"px{lab}h{index}",
        )
        self.hosts[name] = host
        self._record.hosts.append(asdict(host))
        self._save()  # before creating: a crash in between still leaves a record
        peer = f"px{lab}p{index}"
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.netns)
        _ip("link", "set", host.link, "master", self._record.bridge)
        _ip("link", "set", host.link, "up")
        _ip("link", "set", "lo", "up", netns=host.netns)
        _ip("link", "set", peer, "name", "eth0", netns=host.netns)
        _ip("addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0", netns=host.netns)
        _ip("link", "set", "eth0", "up", netns=host.netns)
        return host

    # -- faults -----------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        """Every packet to and from ``host`` is dropped; nothing is reset or closed."""
        _ip("link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.link, "up")

    # -- removal ----------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove every namespace and link of this lab (processes inside must be gone)."""
        _remove(self._record)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / NETWORK_FILE).unlink()

    @classmethod
    def sweep(cls, run_dir: Path) -> bool:
        """Remove what ``run_dir``'s record names; True when there was something to remove."""
        path = run_dir / NETWORK_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = _Record(
                lab=str(data["lab"]),
                bridge=str(data["bridge"]),
                subnet=str(data["subnet"]),
                hosts=[dict(h) for h in data.get("hosts", [])],
            )
        except FileNotFoundError:
            return False
        except (ValueError, KeyError, TypeError) as exc:
            raise NetnsError(f"{path}: unreadable network record ({exc})") from exc
        _remove(record)
        path.unlink()
        return True

    def _save(self) -> None:
        path = self.run_dir / NETWORK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self._record), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def _remove(record: _Record) -> None:
    for host in record.hosts:
        # Deleting the namespace deletes its end of the veth, and with it the pair.
        _ip("netns", "del", host["netns"], check=False)
        _ip("link", "del", host["link"], check=False)
    _ip("link", "del", record.bridge, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /24 of 198.18.0.0/15 that no interface of the root namespace uses."""
    used: set[ipaddress.IPv4Network] = set()
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        parts = line.split()
        if "inet" in parts:
            iface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if isinstance(iface, ipaddress.IPv4Interface):
                used.add(iface.network)
    for subnet in _SUPERNET.subnets(new_prefix=24):
        assert isinstance(subnet, ipaddress.IPv4Network)
        if subnet not in used and not any(subnet.overlaps(u) for u in used):
            return subnet
    raise NetnsError(f"every /24 of {_SUPERNET} is in use")
