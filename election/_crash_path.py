"""The fast crash path as one member runs it: serve our socket while leading, probe the leader's.

    path = CrashPath(config, on_dead=report_dead_leader, on_change=wake_loop)
    path.settle()                              # at start: which address we bind and advertise
    address, incarnation = path.serve()        # taking the lease: both go into /leader
    path.watch(leader)                         # every snapshot as a standby (None: no leader)
    seen = path.seen(leader, leading=False)    # our fast-path state now, None: keep the last
    if path.adopt(seen): ...                   # changed: log it and write our member node
    path.stop_serving(); path.close()

The sockets and the proof rule live in :mod:`election._liveness`; this module
only decides which of them a member keeps open, and what it says about them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable

from election._config import ElectionConfig
from election._errors import ElectionError
from election._liveness import LivenessProbe, LivenessServer, source_address_towards
from election._model import FastPath, LeaderInfo

__all__ = ["CrashPath"]

log = logging.getLogger("pfxha.election")


class CrashPath:
    """One member's side of the fast crash path (a no-op when ``config.fast_path`` is off)."""

    def __init__(
        self,
        config: ElectionConfig,
        *,
        on_dead: Callable[[LeaderInfo], None],
        on_change: Callable[[], None],
    ) -> None:
        self.config = config
        self._on_dead = on_dead
        self._on_change = on_change
        self._probe: LivenessProbe | None = None
        self._server: LivenessServer | None = None
        # (bind, advertised) address of our liveness socket, settled at start.
        self._endpoint: tuple[str, str] | None = None
        # What our member node says about the fast path (rewritten only on change).
        self.published = (FastPath.IDLE, "" if config.fast_path else "fast path off")

    @property
    def enabled(self) -> bool:
        return self.config.fast_path

    # -- leader side ----------------------------------------------------------------------

    def settle(self) -> None:
        """Fix the (bind, advertised) address of the socket we serve while leading.

        By default the address of our route to ZooKeeper: the members reach the same
        ZooKeeper, so they can most likely reach us there (a loopback address would
        only be reachable from this host).
        """
        if not self.enabled:
            return
        hosts = self.config.hosts
        try:
            bind, advertise = self.config.liveness_addresses(lambda: source_address_towards(hosts))
        except OSError as exc:
            raise ElectionError(
                f"cannot find the local address that reaches ZooKeeper ({exc}): set "
                "liveness_advertise (and liveness_host) for the fast path, or turn it off"
            ) from exc
        with contextlib.suppress(ValueError, OSError):
            if ipaddress.ip_address(advertise).is_loopback:
                towards_zk = source_address_towards(hosts)
                if not ipaddress.ip_address(towards_zk).is_loopback:
                    log.warning(
                        "[5025] liveness socket advertised on loopback %s while ZooKeeper is "
                        "reached from %s: members on other hosts cannot verify it, and a "
                        "crash of %s as leader is detected by the session timeout there",
                        advertise,
                        towards_zk,
                        self.config.name,
                        extra={"event_id": 5025},
                    )
        self._endpoint = (bind, advertise)

    def serve(self) -> tuple[str | None, str | None]:
        """(address, incarnation) of our liveness socket for /leader; (None, None) without.

        A socket that cannot be bound (a fixed port taken) costs the fast path, not the
        leadership: the standbys see "advertises no liveness socket" and say so.
        """
        if not self.enabled or self._endpoint is None:
            return None, None
        if self._server is None:
            bind, advertise = self._endpoint
            server = LivenessServer(
                bind, name=self.config.name, port=self.config.liveness_port, advertise=advertise
            )
            try:
                server.start()
            except OSError as exc:
                log.error(
                    "[5026] %s cannot serve its liveness socket on %s port %d (%s): leading "
                    "without the fast path",
                    self.config.name,
                    bind,
                    self.config.liveness_port,
                    exc,
                    extra={"event_id": 5026},
                )
                return None, None
            self._server = server
        return self._server.address, self._server.incarnation

    def stop_serving(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- standby side ---------------------------------------------------------------------

    def watch(self, leader: LeaderInfo | None) -> None:
        """Keep one probe on ``leader`` (None: no leader, or it is us)."""
        if not self.enabled or leader is None:
            self.close()
            return
        # A leader without a (verifiable) liveness socket still gets a probe: it
        # connects nowhere and just says why the fast path is unavailable.
        watched = self._probe.leader if self._probe is not None else None
        if (
            watched is not None
            and watched.czxid == leader.czxid
            and (watched.liveness, watched.incarnation) == (leader.liveness, leader.incarnation)
        ):
            return
        self.close()
        self._probe = LivenessProbe(
            leader,
            self._on_dead,
            self.config.liveness_connect_timeout,
            on_state=lambda _leader, _state, _reason: self._on_change(),
        )
        self._probe.start()

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # -- what we say about it -------------------------------------------------------------

    def seen(self, leader: LeaderInfo | None, *, leading: bool) -> tuple[FastPath, str] | None:
        """Our fast-path state after a snapshot; None to keep the published one.

        Between leaders, and until a new leader's probe has settled, the last state
        stands: a normal takeover then costs no member-node write at all.
        """
        if not self.enabled:
            return None
        if leading:
            return FastPath.IDLE, ""
        status = self._probe.status if self._probe is not None else None
        if leader is None or status is None:
            return None
        return status

    def adopt(self, seen: tuple[FastPath, str] | None) -> bool:
        """Take ``seen`` as the published state; True when it changed (write the node)."""
        if seen is None or seen[0] is self.published[0]:
            return False
        self.published = seen
        return True
