"""The drill's independent observer: ZooKeeper's ``/leader`` and the service's view.

It never asks a connector anything. A kazoo watch on
``/pfxha/<cluster>/leader`` records every leadership change the moment
ZooKeeper announces it; a poller reads the service (its connector list and
its database) every ``interval`` seconds and records registrations and
accepted certificates with the service's own timestamps.

    observer = Observer(history, zk_hosts=lab.zk.hosts, cluster="lab",
                        service_db=ServiceDb(path), connectors=fetch_connectors)
    observer.start()
    observer.leader            # LeaderInfo(name, epoch, since) or LeaderInfo(None, None)
    observer.wait(lambda: observer.leader.epoch == 7, timeout=5)
    observer.stop()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from chaos.checkers.ops import CONNECTORS, DELIVERY, LEADER, OBSERVER, STALE_REJECTED
from chaos.checkers.state import IssuedRow, ServiceDb
from chaos.history import History

__all__ = ["LeaderChange", "Observer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderChange:
    """A leadership change as ZooKeeper showed it; ``at`` is history time."""

    at: float
    name: str | None
    epoch: int | None


class Observer:
    def __init__(
        self,
        history: History,
        *,
        zk_hosts: str,
        cluster: str,
        service_db: ServiceDb,
        connectors: Callable[[], list[dict[str, Any]]] | None = None,
        interval: float = 0.05,
    ) -> None:
        self.history = history
        self.cluster = cluster
        self.db = service_db
        self.fetch_connectors = connectors
        self.interval = interval
        self._zk = KazooClient(hosts=zk_hosts, timeout=2.0, read_only=True)
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.changes: list[LeaderChange] = []
        self.issued: list[IssuedRow] = []
        self.active: list[str] = []
        self.stale_rejected = 0
        self._issued_seen: set[str] = set()
        self._since_unix = time.time() - 1.0
        self._last_connectors: Any = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._zk.start(timeout=15)
        path = f"/pfxha/{self.cluster}/leader"
        self._zk.DataWatch(path)(self._on_leader)
        self._thread = threading.Thread(target=self._poll_loop, name="observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._zk.stop()
            self._zk.close()
        except KazooException:
            log.debug("observer: closing ZooKeeper client failed", exc_info=True)

    # -- what it saw ---------------------------------------------------------------

    @property
    def leader(self) -> LeaderChange:
        with self._lock:
            return self.changes[-1] if self.changes else LeaderChange(0.0, None, None)

    def to_history_time(self, unix: float) -> float:
        return self.history.now() - (time.time() - unix)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate`` holds (re-checked on every observation) or timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, self.interval))
        return True

    def issued_after(self, at: float) -> list[IssuedRow]:
        """Certificates the service accepted after history time ``at``, oldest first."""
        with self._lock:
            return [row for row in self.issued if self.to_history_time(row.issued) >= at]

    # -- sources -------------------------------------------------------------------

    def _on_leader(self, data: bytes | None, stat: object, event: object = None) -> None:
        name: str | None = None
        epoch: int | None = None
        if data:
            try:
                value = json.loads(data)
                name = str(value.get("name")) if value.get("name") else None
                epoch = int(value["epoch"]) if value.get("epoch") is not None else None
            except (ValueError, TypeError, KeyError):
                log.warning("observer: unreadable /leader: %r", data[:200])
        # ZooKeeper stamps the node's last write (mtime, ms, this machine's clock: the
        # creation, or a leader re-writing it with a new epoch): more precise than when
        # the watch reached us, which can lag under load.
        mtime = getattr(stat, "mtime", None) if data else None
        at = self.to_history_time(mtime / 1000.0) if mtime else self.history.now()
        with self._lock:
            change = LeaderChange(min(at, self.history.now()), name, epoch)
            last = self.changes[-1] if self.changes else None
            if last is None or (last.name, last.epoch) != (name, epoch):
                self.changes.append(change)
                self.history.info(
                    OBSERVER, LEADER, {"name": name, "epoch": epoch, "at": round(change.at, 4)}
                )
            self._lock.notify_all()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll_once()
            except Exception:  # the observer must outlive a service hiccup
                log.debug("observer: poll failed", exc_info=True)

    def _poll_once(self) -> None:
        rows = self.db.issued_since(self._since_unix)
        fresh = [row for row in rows if row.request not in self._issued_seen]
        connectors = self.fetch_connectors() if self.fetch_connectors else None
        stale = self.db.stale_rejections()
        with self._lock:
            for row in fresh:
                self._issued_seen.add(row.request)
                self.issued.append(row)
                self.history.info(
                    OBSERVER,
                    DELIVERY,
                    {
                        "request": row.request,
                        "issuer": row.ca,
                        "epoch": row.epoch,
                        "connector": row.connector,
                        "latency": round(row.issued - row.created, 4),
                        "issued_at": round(self.to_history_time(row.issued), 4),
                    },
                )
            if fresh:
                # Keep the query small: everything older than a minute has been seen.
                self._since_unix = max(self._since_unix, fresh[-1].issued - 60.0)
            if connectors is not None:
                active = sorted(c["name"] for c in connectors if c.get("role") == "active")
                summary = (active, sorted((c["name"], c.get("epoch")) for c in connectors))
                if summary != self._last_connectors:
                    self._last_connectors = summary
                    self.active = active
                    epochs = [c.get("epoch") for c in connectors if c.get("role") == "active"]
                    self.history.info(
                        OBSERVER,
                        CONNECTORS,
                        {"active": active, "epoch": epochs[0] if epochs else None},
                    )
            if stale != self.stale_rejected:
                self.stale_rejected = stale
                self.history.info(OBSERVER, STALE_REJECTED, {"count": stale})
            self._lock.notify_all()
