"""A whole pfxha cluster on this machine, as one object.

    lab = Lab(Path("runs/lab"), connectors=3)
    lab.start()            # ZooKeeper x3, CFSSL root + primary + secondary,
                           # the service (seeded), N connectors, optionally Prometheus
    lab.zk.kill_node(lab.zk.leader_index())
    lab.cas.kill("primary")
    lab.stop()             # everything this object started, by pid; logs stay

Start-up is all or nothing: if any part fails, everything already started is
stopped again before the error propagates. Every process logs under the run
directory. The drill uses a :class:`Lab` in-process; ``pfxha lab up`` runs
one inside a small supervisor process (:mod:`chaos.lab.supervisor`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.lab.state import ProcessRecord
from chaos.launch._process import LaunchError, ManagedProcess
from chaos.launch.cfssl import CfsslLab
from chaos.launch.zookeeper import ZOOKEEPER_JAR, ZooKeeperEnsemble

__all__ = ["CLUSTER", "Lab", "LeaderInfo", "check_packages"]

log = logging.getLogger(__name__)

CLUSTER = "lab"


def check_packages(*, prometheus: bool = False) -> None:
    """Fail early, naming the Debian package, when a binary the lab needs is missing."""
    missing: list[str] = []
    if shutil.which("java") is None:
        missing.append("java (Debian package default-jre-headless)")
    if not ZOOKEEPER_JAR.is_file():
        missing.append(f"{ZOOKEEPER_JAR} (Debian package zookeeper)")
    for binary in ("cfssl", "cfssljson"):
        if shutil.which(binary) is None:
            missing.append(f"{binary} (Debian package golang-cfssl)")
    if prometheus and shutil.which("prometheus") is None:
        missing.append("prometheus (Debian package prometheus)")
    if missing:
        raise LaunchError(
            "missing: " + "; ".join(missing) + ". Run scripts/bootstrap.sh (or make bootstrap)."
        )


@dataclass(frozen=True)
class LeaderInfo:
    """``/pfxha/<cluster>/leader`` as ZooKeeper holds it (None fields: nobody leads)."""

    name: str | None
    epoch: int | None
    since: float | None = None


def _record(proc: ManagedProcess) -> ProcessRecord | None:
    if proc.pid is None or not proc.running():
        return None
    return ProcessRecord(proc.name, proc.pid, list(proc.argv), str(proc.log_path))


class Lab:
    """ZooKeeper x3, CFSSL CAs, the stand-in service and N connectors under ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        connectors: int = 3,
        prometheus: bool = False,
        session_timeout: float = 1.0,
        cluster: str = CLUSTER,
    ) -> None:
        if connectors < 1:
            raise ValueError(f"connectors must be at least 1, got {connectors}")
        self.run_dir = Path(run_dir).resolve()
        self.connector_count = connectors
        self.with_prometheus = prometheus
        self.session_timeout = session_timeout
        self.cluster = cluster
        self.zk = ZooKeeperEnsemble(self.run_dir / "zookeeper", size=3, heap_mb=128)
        self.cas = CfsslLab(self.run_dir / "cfssl")
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._extra: list[Any] = []

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        check_packages(prometheus=self.with_prometheus)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._step("zookeeper", self.zk.start, self.zk.stop)
            self._step("cfssl", self.cas.start, self.cas.stop)
            self._start_service()
            self._start_connectors()
            if self.with_prometheus:
                self._start_prometheus()
        except BaseException:
            self.stop()
            raise
        (self.run_dir / "endpoints.json").write_text(json.dumps(self.endpoints(), indent=2))

    def _step(self, name: str, start: Callable[[], None], stop: Callable[[], None]) -> None:
        log.info("lab: starting %s", name)
        # Registered before start: a part that fails half-way still gets stopped.
        self._stops.append((name, stop))
        start()

    def stop(self) -> None:
        """Stop everything started, newest first; keep going past errors."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception:
                log.exception("lab: stopping %s failed", name)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- parts that other helpers' launchers provide -------------------------------

    def _start_service(self) -> None:
        raise LaunchError("the stand-in service launcher (chaos.launch.service) is not there yet")

    def _start_connectors(self) -> None:
        raise LaunchError("the connector launcher (chaos.launch.connector) is not there yet")

    def _start_prometheus(self) -> None:
        raise LaunchError("the Prometheus launcher (chaos.launch.prometheus) is not there yet")

    # -- facts ---------------------------------------------------------------------

    def processes(self) -> list[ProcessRecord]:
        """Every live process this lab started (connectors first: stopped first)."""
        procs: list[ManagedProcess] = []
        procs += [self.zk.node(i) for i in range(self.zk.size)] if self.zk_started else []
        records = [r for r in (_record(p) for p in procs) if r is not None]
        for name in self.cas.names if self.cas_started else ():
            pid = self.cas.pid(name)
            if pid is not None and self.cas.running(name):
                log_path = str(self.cas.log_path(name))
                records.append(ProcessRecord(f"cfssl-{name}", pid, [], log_path))
        return records

    @property
    def zk_started(self) -> bool:
        return any(name == "zookeeper" for name, _ in self._stops)

    @property
    def cas_started(self) -> bool:
        return any(name == "cfssl" for name, _ in self._stops)

    def endpoints(self) -> dict[str, Any]:
        data: dict[str, Any] = {"cluster": self.cluster}
        if self.zk_started:
            data["zookeeper"] = self.zk.hosts
        if self.cas_started:
            data["cas"] = {name: self.cas.url(name) for name in self.cas.names}
            data["crls"] = {name: self.cas.crl_url(name) for name in self.cas.names}
        return data
