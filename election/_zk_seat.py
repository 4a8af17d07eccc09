"""Which ZooKeeper server shares this member's host, and what it is right now.

    server, why = colocated_server("auto", "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181")
    # ("10.0.0.2:2181", "10.0.0.2 is an address of this host")
    read_seat("10.0.0.2:2181", timeout=0.5)   # ZkSeat.LEADER / FOLLOWER / UNKNOWN

``colocated_server`` is an election setting: ``""`` (placement off, the
default), ``"auto"`` or ``"host:port"``. ``auto`` picks the one server of
``hosts`` whose address this host owns, tested by binding a socket to it (port
0, nothing is sent): only an address of one of this host's interfaces binds.
Loopback addresses bind everywhere, so a single-host lab with every server on
127.0.0.1 finds three, and more than one match turns placement off with that
reason (as does ``net.ipv4.ip_nonlocal_bind``, under which every address binds).

``read_seat`` sends ``srvr`` (a four-letter word the server must whitelist,
``4lw.commands.whitelist``; deploy/zookeeper/zoo.cfg does) and parses its
``Mode:`` line.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from election._placement import ZkSeat, parse_srvr

__all__ = ["colocated_server", "is_local_address", "read_seat"]

# srvr replies are a few hundred bytes; a server sending more is not one.
_MAX_REPLY = 64 * 1024


def _split(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    return host.strip("[]"), int(port)


def is_local_address(host: str) -> bool:
    """Whether ``host`` (a name or an address) resolves to an address of this host."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, address in infos:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False


def colocated_server(
    setting: str, hosts: str, *, is_local: Callable[[str], bool] = is_local_address
) -> tuple[str | None, str]:
    """(the server on this host or None, why): ``setting`` as described above."""
    setting = setting.strip()
    if not setting:
        return None, "colocated_server not set: placement off"
    if setting != "auto":
        return setting, "colocated_server set"
    servers = [s.strip() for s in hosts.split("/", 1)[0].split(",") if s.strip()]
    local = [s for s in servers if is_local(_split(s)[0])]
    if len(local) == 1:
        return local[0], f"{_split(local[0])[0]} is an address of this host"
    if not local:
        return None, "auto: no ZooKeeper server of hosts is on this host: placement off"
    return None, (
        f"auto: {len(local)} ZooKeeper servers bind as local ({', '.join(local)}; one host, "
        "loopback, or ip_nonlocal_bind): placement off"
    )


def read_seat(server: str, timeout: float) -> ZkSeat:
    """What ``server`` is now (``srvr``); UNKNOWN when it does not answer or serve."""
    try:
        host, port = _split(server)
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"srvr")
            chunks: list[bytes] = []
            size = 0
            while size < _MAX_REPLY:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        return ZkSeat.UNKNOWN
    return parse_srvr(b"".join(chunks).decode("utf-8", errors="replace"))
