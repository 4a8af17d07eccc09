"""A whole pfxha cluster on this machine, as one object.

    lab = Lab(Path("runs/lab"), connectors=3)
    lab.start()            # ZooKeeper x3, CFSSL root + primary + secondary,
                           # the service (seeded), N connectors, optionally Prometheus
    lab.zk.kill_node(lab.zk.leader_index())
    lab.cas.kill("primary")
    lab.stop()             # everything this object started, by pid; logs stay

    Lab(run_dir, ca="openbao")   # the issuing CAs on OpenBao Raft clusters (or "mixed":
                                 # primary CFSSL, secondary OpenBao): chaos.launch.ca_tier
    Lab(run_dir, links=True)   # each connector reaches the service and each CA
                               # through its own fault proxy (chaos.launch.links)
    lab.link_cut("c2", ("ca:*",), "blackhole")   # a Fault: c2 alone loses every CA

Start-up is all or nothing: if any part fails, everything already started is
stopped again before the error propagates. Every process logs under the run
directory. The drill uses a :class:`Lab` in-process; ``pfxha lab up`` runs
one inside a small supervisor process (:mod:`chaos.lab.supervisor`).

A lab's settings and shared state are :mod:`chaos.lab._lab_base`, the start-up
of each part :mod:`chaos.lab._lab_parts`, what the drill and the nemesis do to
a running lab :mod:`chaos.lab._lab_controls`; here: the start, and the facts
(its processes, its endpoints).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaos.lab._lab_base import CLUSTER
from chaos.lab._lab_controls import LabControls, LeaderInfo
from chaos.lab._lab_parts import LAB_WORK_AWARE, LabParts
from chaos.lab._preflight import check_packages
from chaos.lab.state import ProcessRecord
from chaos.launch._process import ManagedProcess

__all__ = ["CLUSTER", "LAB_WORK_AWARE", "Lab", "LeaderInfo", "check_packages"]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _record(proc: ManagedProcess) -> ProcessRecord | None:
    if proc.pid is None or not proc.running():
        return None
    return ProcessRecord(proc.name, proc.pid, list(proc.argv), str(proc.log_path))


class Lab(LabParts, LabControls):
    """ZooKeeper x3, CFSSL CAs, the stand-in service and N connectors under ``run_dir``."""

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        check_packages(prometheus=self.with_prometheus, ca=self.ca_kind)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.use_hosts:
                self._step("network", self._make_hosts, self._remove_hosts)
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

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts ---------------------------------------------------------------------

    def processes(self) -> list[ProcessRecord]:
        """Every live process this lab started (connectors first: stopped first)."""
        procs: list[ManagedProcess] = []
        if self.fleet is not None:
            procs += [self.fleet.process(name) for name in self.fleet.names]
        procs += [self.zk.node(i) for i in range(self.zk.size)] if self.zk_started else []
        if self.service is not None:
            procs.append(self.service.process)
        records: list[ProcessRecord] = []
        if self.links is not None and self.links.process is not None:
            links = self.links.process
            if links.poll() is None:
                log_path = str(self.links.log_path or "")
                records.append(ProcessRecord("links", links.pid, list(self.links.argv), log_path))
        if self.prometheus is not None and self.prometheus.process is not None:
            procs.append(self.prometheus.process)
        records += [r for r in (_record(p) for p in procs) if r is not None]
        for name, pid in (self.cas.pids() if self.cas_started else {}).items():
            argv = _cmdline(pid)
            if argv:
                records.append(ProcessRecord(name, pid, argv, str(self.cas.log_path(name))))
        return records

    def endpoints(self) -> dict[str, Any]:
        data: dict[str, Any] = {"cluster": self.cluster, "topology": self.topology}
        if self.network is not None:
            data["hosts"] = {name: host.address for name, host in self.host_of.items()}
            # Which namespace is which host: for `ip netns exec`, and to check removal.
            data["namespaces"] = {h.name: h.netns for h in self.network.hosts.values()}
        if self.zk_started:
            data["zookeeper"] = self.zk.hosts
        if self.cas_started:
            data["cas"] = {name: self.cas.url(name) for name in self.cas.names}
            data["crls"] = {name: self.cas.crl_url(name) for name in self.cas.names}
        if self.service is not None:
            data["service"] = self.service.url
            if self.service_ca is not None:
                data["service_ca"] = str(self.service_ca)
            data["service_db"] = str(self.service.db_path)
        if self.fleet is not None:
            data["connectors"] = {n: self.fleet.metrics_url(n) for n in self.fleet.names}
        if self.links is not None:
            # Each connector's fault proxies: connector -> target -> loopback port.
            data["links"] = self.links.ports()
        if self.wan is not None:
            data["wan"] = {"rtt_s": 2 * self.wan.up.latency_s, "jitter_s": 2 * self.wan.up.jitter_s}
        for key, faults in (("ca_lan", self.ca_lan), ("zk_lan", self.zk_lan)):
            if faults is not None:
                data[key] = {"rtt_s": 2 * faults.up.latency_s}
        if self.prometheus is not None:
            data["prometheus"] = self.prometheus.url
        return data
