"""The lab ``pfxha bench flow`` measures: ZooKeeper x3, the CAs, the service, connectors, links.

    with flow_lab(FlowSetup(connectors=3, isolate=True, wan_rtt=0.08)) as lab:
        lab.admin.post(...)                       # the service's admin API
        lab.set_wan(0.02)                         # every connector's service link, now
        lab.meter.start(); ...; lab.meter.stop()  # CPU per part of the lab
        lab.hop                                   # what one proxy hop costs (with a WAN)

Isolated (``isolate``), the leader runs on half the CPUs and everything else
(this process and every child started here) on the other half; the keygen
windows belong on ``keygen_cpus``. With ``wan_rtt`` (or ``--ca-rtt`` /
``--zk-rtt``) each connector reaches the service (the CAs, ZooKeeper) through
links of its own in a link server process, and one more connector's
fault-free link measures what a proxy hop costs, so it is never hidden in the
figures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chaos.bench._cpu import CpuMeter, pin_process
from chaos.launch.ca_tier import CaTier
from chaos.launch.connector import ConnectorFleet
from chaos.launch.link_server import LinkServer
from chaos.launch.links import (
    ca_target,
    certdb_target,
    lan,
    wan,
    zk_targets,
)
from chaos.launch.proxy import LinkFaults
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from connector.config import LoopSettings

__all__ = ["FlowLab", "FlowLoad", "FlowSetup", "cpus", "flow_lab", "split_cpus"]

_PROBE = "overhead-probe"


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def split_cpus(cpus: list[int]) -> tuple[list[int], list[int]]:
    """(the connector's CPUs, everyone else's) for ``--isolate``: half each, at least one."""
    if len(cpus) < 2:
        raise ValueError("isolating the connector needs at least two CPUs")
    half = len(cpus) // 2
    return cpus[:half], cpus[half:]


@dataclass(frozen=True)
class FlowSetup:
    connectors: int = 3
    workers: int | None = None
    keypool: int = 0
    isolate: bool = False
    run_dir: Path | None = None
    ca: str = "cfssl"
    wan_rtt: float | None = None
    wan_jitter: float = 0.0
    ca_rtt: float | None = None
    zk_rtt: float | None = None


@dataclass(frozen=True)
class FlowLoad:
    """What one bench run asks of a lab: requests, their key type and the windows."""

    devices: int = 300
    key_type: str = "rsa2048"
    keygen_seconds: float = 5.0
    paced_seconds: float = 10.0
    rounds: int = 3


@dataclass
class FlowLab:
    setup: FlowSetup
    service: ServiceProcess
    fleet: ConnectorFleet
    links: LinkServer | None
    leader: str
    cores: int
    workers: int
    connector_cpus: list[int]
    other_cpus: list[int]
    keygen_cpus: list[int] | None
    meter: CpuMeter
    admin: httpx.Client
    # GET /healthz direct and through a fault-free link (ms), with a WAN.
    hop: dict[str, float] | None

    def set_wan(self, rtt_s: float, jitter_s: float = 0.0) -> None:
        """Every connector's service link to this round trip, at once (a WAN lab only)."""
        if self.links is None:
            raise RuntimeError("no links: start the lab with a wan_rtt")
        for name in self.fleet.names:
            for proxy in self.links.select(name, "service").values():
                proxy.set(wan(rtt_s, jitter_s))

    def links_cpu_s(self) -> float:
        return self.links.cpu_s() if self.links is not None else 0.0


@contextmanager
def flow_lab(
    setup: FlowSetup, progress: Callable[[str], None] = lambda _: None
) -> Iterator[FlowLab]:
    """Start everything, elect a leader, pin it; stop and clean up on the way out."""
    original_cpus = cpus()
    isolate = setup.isolate
    connector_cpus, other_cpus = split_cpus(original_cpus) if isolate else (original_cpus, [])
    cores = len(connector_cpus)
    # A batch shares its service calls, so even one CPU wants a few requests
    # waiting for their key to keep busy between calls (connector/agent/hand.py):
    # the connector's default, or more with many CPUs (each makes a key at once).
    workers = setup.workers or max(LoopSettings().workers, 4 * cores)
    if isolate:
        # Set before any thread or child exists: all of them inherit it.
        os.sched_setaffinity(0, other_cpus)
    own_dir = setup.run_dir is None
    base = Path(tempfile.mkdtemp(prefix="pfxha-bench-flow-")) if own_dir else setup.run_dir
    assert base is not None
    base.mkdir(parents=True, exist_ok=True)
    n = setup.connectors
    zk = ZooKeeperEnsemble(base / "zookeeper", size=3, heap_mb=128)
    lab = CaTier(base / "cfssl", kind=setup.ca, connectors=[f"c{i}" for i in range(1, n + 1)])
    service = ServiceProcess(base / "service", extra_args=["--renewal-interval", "0"])
    fleet: ConnectorFleet | None = None
    links: LinkServer | None = None
    try:
        progress(f"starting ZooKeeper x3, the CAs ({setup.ca}), the service")
        zk.start()
        lab.start()
        service.start()
        names = [f"c{i}" for i in range(1, n + 1)]
        away = _away(service.url, lab.describe()["cas"], zk.hosts, setup)
        if away:
            # Each connector reaches the service (and the CAs, ZooKeeper) through its own
            # links with their latency; one more connector's links, without faults,
            # measure what a proxy hop costs.
            rtts = ", ".join(f"{p} {2 * f.up.latency_s:g} s" for p, (_, f) in away.items())
            progress(f"links with these round trips: {rtts}")
            targets = {t: url for each, _ in away.values() for t, url in each.items()}
            links = LinkServer([*names, _PROBE], targets)
            links.start()
            for name in names:
                for pattern, (_, faults) in away.items():
                    for proxy in links.select(name, pattern).values():
                        proxy.set(faults)
        fleet = ConnectorFleet(
            base / "connectors",
            count=n,
            cluster="bench",
            zk_hosts=zk.hosts,
            service_url=service.url,
            cas=lab.describe(),
            cas_of=lab.describe,  # each connector its own CA credentials (OpenBao)
            # No key pool by default: keys made before a round starts would
            # count as free throughput the machine never sustains.
            loop={
                "batch_size": 100,
                "workers": workers,
                "poll_wait_s": 1.0,
                "keypool_size": setup.keypool,
            },
            endpoints={n: links.endpoints(n) for n in names} if links is not None else None,
        )
        progress(f"starting {n} connectors")
        fleet.start()
        leader = fleet.wait_for_leader()
        if isolate:
            pin_process(fleet.process(leader).pid or 0, connector_cpus)
        meter = CpuMeter(
            {
                "connector_leader": [fleet.process(leader).pid or 0],
                "connectors_standby": [
                    fleet.process(n).pid or 0 for n in fleet.names if n != leader
                ],
                "service": [service.pid or 0],
                # The CA servers' CPU under their vendor ("cfssl", "openbao", "mixed").
                setup.ca: list(lab.pids().values()),
                "zookeeper": [zk.node(i).pid or 0 for i in range(3)],
            },
            include_self="bench_and_devices",
        )
        with httpx.Client(base_url=service.url, timeout=30.0) as admin:
            # Let the servers settle before measuring.
            time.sleep(2.0)
            hop = _proxy_hop(service.url, links) if setup.wan_rtt is not None and links else None
            yield FlowLab(
                setup=setup,
                service=service,
                fleet=fleet,
                links=links,
                leader=leader,
                cores=cores,
                workers=workers,
                connector_cpus=connector_cpus,
                other_cpus=other_cpus,
                keygen_cpus=connector_cpus if isolate else None,
                meter=meter,
                admin=admin,
                hop=hop,
            )
    finally:
        if fleet is not None:
            fleet.stop(grace=5)
        if links is not None:
            links.stop()
        service.stop(grace=5)
        if own_dir:
            lab.destroy()  # its certdb server's files too
        else:
            lab.stop()
        zk.stop()
        if isolate:
            os.sched_setaffinity(0, original_cpus)
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


def _away(
    service_url: str, cas: dict[str, Any], zk_hosts: str, setup: FlowSetup
) -> dict[str, tuple[dict[str, str], LinkFaults]]:
    """Link pattern -> (its targets, its latency) for what the options put away."""
    away: dict[str, tuple[dict[str, str], LinkFaults]] = {}
    if setup.wan_rtt is not None:
        away["service"] = ({"service": service_url}, wan(setup.wan_rtt, setup.wan_jitter))
    if setup.ca_rtt is not None:
        targets = {ca_target(n): str(spec["url"]) for n, spec in cas.items()}
        targets |= {
            certdb_target(n): str(s["certdb_dsn"]) for n, s in cas.items() if s.get("certdb_dsn")
        }
        away["ca:*"] = (targets, lan(setup.ca_rtt, "--ca-rtt"))
    if setup.zk_rtt is not None:
        away["zk:*"] = (zk_targets(zk_hosts), lan(setup.zk_rtt, "--zk-rtt"))
    return away


def _proxy_hop(url: str, links: LinkServer, samples: int = 50) -> dict[str, float]:
    """Median ``GET /healthz`` round trip direct and through a fault-free link, in ms."""

    def median_ms(base: str) -> float:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            client.get("/healthz")  # connect outside the samples
            times = []
            for _ in range(samples):
                start = time.perf_counter()
                client.get("/healthz")
                times.append(time.perf_counter() - start)
        return round(1000 * sorted(times)[len(times) // 2], 3)

    direct, proxied = median_ms(url), median_ms(links.url(_PROBE, "service"))
    return {"direct": direct, "proxied": proxied, "added": round(proxied - direct, 3)}
