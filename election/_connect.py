"""Bounded TCP connects for kazoo: a silent ZooKeeper server costs a fraction of the session.

    handler = BoundedConnectHandler(connect_bound("zk1:2181,zk2:2181,zk3:2181", 1.0))
    KazooClient(hosts=..., timeout=1.0, handler=handler)   # connects give up after 0.33 s

Kazoo gives each TCP connect the whole session timeout. A server whose host
crashed or was cut off drops the SYN, so a client that picks it (kazoo tries the
servers in random order) waits the full session timeout before it tries the
next one. Measured on the hosts lab (docs/chaos.md, "Hosts"): after a host
crash that took the quorum leader, standbys reached a serving node 1.0 s after
the fault instead of right after ZooKeeper's re-election; their own sessions,
restarted by the new quorum leader, were then a few tens of milliseconds from
expiring. kazoo already bounds the session handshake by
``session_timeout / len(hosts)``; the connect gets the same bound, so one pass
over every server fits in one session timeout. A refused connect (a node
restarting, RST) fails at once either way.
"""

from __future__ import annotations

from typing import Any

from kazoo.handlers.threading import SequentialThreadingHandler

__all__ = ["MIN_CONNECT_S", "BoundedConnectHandler", "connect_bound"]

# Below this a connect across a loaded data-centre network can fail spuriously.
MIN_CONNECT_S = 0.1


def connect_bound(hosts: str, session_timeout: float) -> float:
    """Seconds one TCP connect may take: ``session_timeout`` shared by the servers listed."""
    servers = [h for h in hosts.split("/", 1)[0].split(",") if h.strip()]
    return max(MIN_CONNECT_S, session_timeout / max(1, len(servers)))


class BoundedConnectHandler(SequentialThreadingHandler):  # type: ignore[misc]  # kazoo is untyped
    """kazoo's threading handler whose TCP connects give up after ``connect_timeout`` s."""

    def __init__(self, connect_timeout: float) -> None:
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout}")
        super().__init__()
        self.connect_timeout = connect_timeout

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        if timeout is None or timeout > self.connect_timeout:
            kwargs["timeout"] = self.connect_timeout
        return super().create_connection(*args, **kwargs)
