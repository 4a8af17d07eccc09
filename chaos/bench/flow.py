"""``pfxha bench flow``: the whole PFX flow end to end, beside this machine's raw keygen rate.

    pfxha bench flow --connectors 3 --devices 300 --json runs/bench/flow.json
    pfxha bench flow --ca openbao --json runs/bench/flow-bao.json   # or --ca mixed

One run starts a 3-node ZooKeeper, the CA lab (``--ca``: CFSSL root + two issuing
CAs; each issuing CA on its own OpenBao Raft cluster; or mixed), the
stand-in service and ``--connectors`` connector processes, then measures:

1. ``keygen_per_s``: raw key generation of the profile's key type with every
   core the connector has (one process per core, nothing else running but idle
   servers), in windows that alternate with the saturation rounds (K S K S K
   ...), so both see the same background load on a shared machine;
2. saturation: ``--rounds`` rounds of ``--devices``/rounds requests queued at
   once (one assignment makes them all due); ``throughput_per_s`` = requests /
   time until the last PFX was delivered to its device (device check-in opened
   it with its management key), over all rounds. ``ratio`` = throughput / keygen;
3. half load: requests created at half the measured keygen rate for
   ``--paced-seconds``; ``latency_s`` is per request, from creation to the
   device holding its PFX.

"Delivered" means the device checked in and opened the PFX: a watcher plays
the push service (it reads the service's database for issued requests) and
checks those devices in at once over HTTP.

Two layouts (``layout`` in the JSON):

- ``isolated`` (the default with two CPUs or more): the leader on half the
  CPUs, everything else on the other half, keygen windows on the leader's
  CPUs; ``ratio`` is the connector against raw keygen on the host it has,
  which is what a connector host of its own sees in production;
- ``shared`` (``--shared``): every process on every CPU; ``ratio`` is the
  whole lab's (connector, stand-in service, CFSSL, ZooKeeper x3 and the
  simulated devices) against raw keygen on all CPUs.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families

from chaos.bench._cpu import CpuMeter, pin_process
from chaos.bench._plot import cpu_budget_plot
from chaos.bench._stats import summarize, write_result
from chaos.bench._tenant import Device, Tenant, checkin
from chaos.launch.ca_tier import CaTier
from chaos.launch.connector import ConnectorFleet
from chaos.launch.link_server import LinkServer
from chaos.launch.links import (
    CA_RTT_OPTION,
    WAN_JITTER_OPTION,
    WAN_RTT_OPTION,
    ZK_RTT_OPTION,
    ca_target,
    certdb_target,
    check_lan,
    check_wan,
    lan,
    wan,
    zk_targets,
)
from chaos.launch.proxy import LinkFaults
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from connector.pki import KeyType, generate_key

__all__ = ["command", "run_flow_bench", "split_cpus"]

log = logging.getLogger("pfxha.bench.flow")


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def split_cpus(cpus: list[int]) -> tuple[list[int], list[int]]:
    """(the connector's CPUs, everyone else's) for ``--isolate``: half each, at least one."""
    if len(cpus) < 2:
        raise ValueError("isolating the connector needs at least two CPUs")
    half = len(cpus) // 2
    return cpus[:half], cpus[half:]


def _bind_worker(cpus: list[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _keygen_worker(key_type: str, seconds: float) -> int:
    kt = KeyType.parse(key_type)
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        generate_key(kt)
        count += 1
    return count


def measure_keygen(
    key_type: str, seconds: float, processes: int, cpus: list[int] | None = None
) -> float:
    """Keys per second with ``processes`` processes (bound to ``cpus``) for ``seconds``."""
    with cf.ProcessPoolExecutor(
        max_workers=processes, initializer=_bind_worker, initargs=(cpus,)
    ) as pool:
        list(pool.map(_warm, range(processes)))  # start the workers before timing
        started = time.monotonic()
        counts = list(pool.map(_keygen_worker, [key_type] * processes, [seconds] * processes))
        elapsed = time.monotonic() - started
    return sum(counts) / max(elapsed, seconds)


def _warm(_: int) -> None:
    return None


class DeliveryWatcher:
    """Checks devices in as soon as the service has their PFX; records when each arrived.

    Real devices are woken by a push notification; here the watcher plays the
    push service by reading the service's database (read-only, SQLite WAL
    allows it beside the writer) for issued requests, so the notification
    costs the service nothing. Check-ins then go over HTTP like a device's, on
    a few threads (devices are independent); a request leaves ``issued`` once
    its device checked in.
    """

    def __init__(self, client: httpx.Client, db_path: Path, devices: dict[str, Device]) -> None:
        self.client = client
        self.db_path = db_path
        self.devices = devices
        self.delivered: dict[str, float] = {}  # request id -> monotonic time
        self.failures: list[str] = []
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="bench-device")
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _checkin(self, device: Device) -> None:
        try:
            for item in checkin(self.client, device):
                with self._lock:
                    self.delivered.setdefault(item.request_id, time.monotonic())
        except Exception as exc:  # a PFX that does not open is a failure we report
            self.failures.append(f"{device.id}: {exc}")
        finally:
            with self._lock:
                self._busy.discard(device.id)

    def _issued_devices(self, db: sqlite3.Connection) -> list[str]:
        rows = db.execute("SELECT device_id FROM requests WHERE state = 'issued'").fetchall()
        return [row[0] for row in rows]

    def _run(self) -> None:
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            while not self._stop.is_set():
                try:
                    issued = self._issued_devices(db)
                except sqlite3.Error as exc:
                    self.failures.append(f"poll: {exc}")
                    issued = []
                submitted = 0
                for device_id in issued:
                    with self._lock:
                        if device_id not in self.devices or device_id in self._busy:
                            continue
                        self._busy.add(device_id)
                    self._pool.submit(self._checkin, self.devices[device_id])
                    submitted += 1
                self._stop.wait(0.01 if submitted else 0.02)
        finally:
            db.close()

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _saturation(
    admin: httpx.Client,
    db_path: Path,
    key_type: str,
    devices_n: int,
    timeout: float,
    prefix: str,
    meter: CpuMeter,
) -> dict[str, Any]:
    tenant = Tenant(admin, prefix=prefix, key_type=key_type)
    # Users, memberships and devices first, the assignment last: it queues
    # every request in one transaction, so they are all "created" at once.
    tenant.create_profile(assign=False)
    devices = tenant.enroll(devices_n)
    watcher = DeliveryWatcher(admin, db_path, {d.id: d for d in devices})
    watcher.start()
    meter.start()  # from here on, the CPU is the flow's (enrolment is not)
    created = time.monotonic()
    tenant.assign()
    complete = watcher.wait(devices_n, timeout)
    meter.stop()
    watcher.stop()
    elapsed = (max(watcher.delivered.values()) if watcher.delivered else time.monotonic()) - created
    return {
        "requested": devices_n,
        "delivered": len(watcher.delivered),
        "complete": complete,
        "seconds": round(elapsed, 3),
        "latencies": [t - created for t in watcher.delivered.values()],
        "failures": watcher.failures[:10],
    }


def _paced(
    admin: httpx.Client,
    db_path: Path,
    key_type: str,
    rate: float,
    seconds: float,
    timeout: float,
) -> dict[str, Any]:
    """Requests at ``rate`` per second: each made due by adding its user to the group."""
    count = max(1, int(rate * seconds))
    tenant = Tenant(admin, prefix="paced", key_type=key_type)
    tenant.create_profile()
    devices = tenant.enroll(count, join_group=False)
    watcher = DeliveryWatcher(admin, db_path, {d.id: d for d in devices})
    watcher.start()
    created: dict[str, float] = {}
    started = time.monotonic()
    for index, device in enumerate(devices):
        _sleep_until(started + index / rate)
        created[device.id] = time.monotonic()
        tenant.join_group(device.user_id)
    complete = watcher.wait(count, timeout)
    watcher.stop()
    by_device = {r["id"]: r["device_id"] for r in tenant.requests()}
    latencies = [t - created[by_device[rid]] for rid, t in watcher.delivered.items()]
    return {
        "rate_per_s": round(rate, 2),
        "requested": count,
        "delivered": len(watcher.delivered),
        "complete": complete,
        "latency_s": summarize(latencies),
        "failures": watcher.failures[:10],
    }


_KEYGEN_METRIC = "pfxha_connector_key_generation_cpu_seconds"


def keygen_cpu_so_far(metrics_text: str, key_type: str) -> tuple[float, int]:
    """(CPU seconds, keys) a connector's key generation has cost so far, from its /metrics."""
    cpu, keys = 0.0, 0
    wanted = str(KeyType.parse(key_type))
    for family in text_string_to_metric_families(metrics_text):
        if family.name != _KEYGEN_METRIC:
            continue
        for sample in family.samples:
            if sample.labels.get("key_type") != wanted:
                continue
            if sample.name.endswith("_sum"):
                cpu = sample.value
            elif sample.name.endswith("_count"):
                keys = int(sample.value)
    return cpu, keys


def _leader_keygen(fleet: ConnectorFleet, leader: str, key_type: str) -> tuple[float, int]:
    response = httpx.get(fleet.metrics_url(leader) + "/metrics", timeout=5.0)
    response.raise_for_status()
    return keygen_cpu_so_far(response.text, key_type)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_flow_bench(
    *,
    connectors: int,
    devices: int,
    key_type: str = "rsa2048",
    keygen_seconds: float = 5.0,
    paced_seconds: float = 10.0,
    rounds: int = 3,
    workers: int | None = None,
    keypool: int = 0,
    isolate: bool = False,
    run_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ca: str = "cfssl",
    wan_rtt: float | None = None,
    wan_jitter: float = 0.0,
    ca_rtt: float | None = None,
    zk_rtt: float | None = None,
) -> dict[str, Any]:
    """One run; ``isolate`` gives the leader half the CPUs and everything else the rest.

    Isolated, the leader plays a connector host of its own (as in production:
    the service, the CAs, ZooKeeper and the devices are other machines) and
    the keygen windows run on the leader's CPUs only, so ``ratio`` compares
    the connector with raw keygen on the same CPUs. Shared, every process
    competes for every CPU and ``ratio`` is the whole lab's.
    """
    original_cpus = _cpus()
    connector_cpus, other_cpus = split_cpus(original_cpus) if isolate else (original_cpus, [])
    cores = len(connector_cpus)
    # Requests in hand are twice the workers; a batch shares its service calls,
    # so even one CPU wants a few requests in hand to keep busy between calls.
    workers = workers or max(4, 2 * cores)
    if isolate:
        # Set before any thread or child exists: all of them inherit it.
        os.sched_setaffinity(0, other_cpus)
    own_dir = run_dir is None
    base = Path(tempfile.mkdtemp(prefix="pfxha-bench-flow-")) if run_dir is None else run_dir
    base.mkdir(parents=True, exist_ok=True)
    zk = ZooKeeperEnsemble(base / "zookeeper", size=3, heap_mb=128)
    lab = CaTier(base / "cfssl", kind=ca, connectors=[f"c{i}" for i in range(1, connectors + 1)])
    service = ServiceProcess(base / "service", extra_args=["--renewal-interval", "0"])
    fleet: ConnectorFleet | None = None
    links: LinkServer | None = None
    try:
        progress(f"starting ZooKeeper x3, the CAs ({ca}), the service")
        zk.start()
        lab.start()
        service.start()
        names = [f"c{i}" for i in range(1, connectors + 1)]
        away = _away(service.url, lab.describe()["cas"], zk.hosts, wan_rtt, wan_jitter,
                     ca_rtt, zk_rtt)  # fmt: skip
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
            count=connectors,
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
                "keypool_size": keypool,
            },
            endpoints={n: links.endpoints(n) for n in names} if links is not None else None,
        )
        progress(f"starting {connectors} connectors")
        fleet.start()
        leader = fleet.wait_for_leader()
        if isolate:
            pin_process(fleet.process(leader).pid or 0, connector_cpus)
        keygen_cpus = connector_cpus if isolate else None
        meter = CpuMeter(
            {
                "connector_leader": [fleet.process(leader).pid or 0],
                "connectors_standby": [
                    fleet.process(n).pid or 0 for n in fleet.names if n != leader
                ],
                "service": [service.pid or 0],
                # The CA servers' CPU under their vendor ("cfssl", "openbao", "mixed").
                ca: list(lab.pids().values()),
                "zookeeper": [zk.node(i).pid or 0 for i in range(3)],
            },
            include_self="bench_and_devices",
        )
        with httpx.Client(base_url=service.url, timeout=30.0) as admin:
            # Let the key pools fill and the servers settle before measuring.
            time.sleep(2.0)
            hop = _proxy_hop(service.url, links) if wan_rtt is not None and links else None
            links_cpu_before = links.cpu_s() if links is not None else 0.0
            # Keygen windows and saturation rounds alternate (K S K S ... K), so
            # both see the same background load on a shared machine.
            keygen_rates: list[float] = []
            runs: list[dict[str, Any]] = []
            # What the leader's own keys cost it inside the rounds (its metrics).
            leader_keygen_cpu, leader_keys = 0.0, 0
            per_round = max(1, devices // rounds)
            for index in range(rounds):
                progress(f"raw {key_type} keygen, {cores} processes, {keygen_seconds:g} s")
                keygen_rates.append(measure_keygen(key_type, keygen_seconds, cores, keygen_cpus))
                progress(f"saturation round {index + 1}/{rounds}: {per_round} requests at once")
                cpu_before, keys_before = _leader_keygen(fleet, leader, key_type)
                runs.append(
                    _saturation(
                        admin,
                        service.db_path,
                        key_type,
                        per_round,
                        max(120.0, per_round),
                        prefix=f"sat{index}",
                        meter=meter,
                    )
                )
                cpu_after, keys_after = _leader_keygen(fleet, leader, key_type)
                leader_keygen_cpu += cpu_after - cpu_before
                leader_keys += keys_after - keys_before
            links_cpu = (links.cpu_s() - links_cpu_before) if links is not None else 0.0
            progress(f"raw {key_type} keygen again")
            keygen_rates.append(measure_keygen(key_type, keygen_seconds, cores, keygen_cpus))
            keygen = sum(keygen_rates) / len(keygen_rates)
            delivered = sum(r["delivered"] for r in runs)
            seconds = sum(r["seconds"] for r in runs)
            cpu_ms_per_request = meter.per_item(delivered)
            saturation = {
                "rounds": rounds,
                "requested": sum(r["requested"] for r in runs),
                "delivered": delivered,
                "complete": all(r["complete"] for r in runs),
                "seconds": round(seconds, 3),
                "throughput_per_s": round(delivered / seconds, 2) if seconds > 0 else 0.0,
                "round_throughput_per_s": [
                    round(r["delivered"] / r["seconds"], 2) if r["seconds"] > 0 else 0.0
                    for r in runs
                ],
                "latency_s": summarize([x for r in runs for x in r["latencies"]]),
                "failures": [f for r in runs for f in r["failures"]][:10],
                # Where the cores went during the rounds, per delivered request;
                # keygen_ms is what one key costs a core in the keygen windows.
                "cpu_ms_per_request": cpu_ms_per_request,
                "keygen_ms": round(1000 * cores / keygen, 2) if keygen else None,
                # The same keys as the leader made them during the rounds, and what
                # the leader spent per request beyond its keys (CSR, CA call, PFX,
                # envelope, service calls, lease upkeep): the connector's own overhead.
                "leader_keys": leader_keys,
                "leader_keygen_ms": (
                    round(1000 * leader_keygen_cpu / leader_keys, 2) if leader_keys else None
                ),
                "leader_beyond_keygen_ms": (
                    round(
                        cpu_ms_per_request["connector_leader"]
                        - 1000 * leader_keygen_cpu / delivered,
                        2,
                    )
                    if delivered
                    else None
                ),
            }
            # Half the keygen rate, but never beyond what the flow sustained: with
            # a cheap key type (P-256) half the keygen rate is far past saturation.
            rate = min(keygen / 2, 0.9 * saturation["throughput_per_s"])
            progress(f"half load: {rate:.1f} requests/s for {paced_seconds:g} s")
            paced = _paced(admin, service.db_path, key_type, rate, paced_seconds, timeout=60.0)
        throughput = saturation["throughput_per_s"]
        return {
            "requested": saturation["requested"],
            "delivered": saturation["delivered"],
            "throughput_per_s": throughput,
            "keygen_per_s": round(keygen, 2),
            "ratio": round(throughput / keygen, 4) if keygen else None,
            # Key generation time is random: the ratio against the fastest and the
            # slowest keygen window shows how much of a difference is noise.
            "ratio_range": (
                [round(throughput / max(keygen_rates), 4), round(throughput / min(keygen_rates), 4)]
                if min(keygen_rates) > 0
                else None
            ),
            # The same ratio against the keys the leader made in the rounds (their
            # thread CPU, from its metrics) instead of the keygen windows: both sides
            # share the same random keys, so this one carries far less noise.
            "ratio_own_keys": (
                round(throughput * saturation["leader_keygen_ms"] / (1000 * cores), 4)
                if saturation["leader_keygen_ms"]
                else None
            ),
            "latency_s": paced["latency_s"],
            "key": key_type,
            "ca": ca,
            "layout": "isolated" if isolate else "shared",
            "cores": cores,
            "isolated": (
                {"connector_cpus": connector_cpus, "other_cpus": other_cpus} if isolate else None
            ),
            "connectors": connectors,
            "leader": leader,
            "workers_per_connector": workers,
            "keypool_per_connector": keypool,
            "keygen_windows_per_s": [round(k, 2) for k in keygen_rates],
            # Other work on the machine shows here: the ratio is what matters.
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "saturation": saturation,
            "half_load": paced,
            # The service across a WAN (--wan-rtt): the latency put on each connector's
            # service link, and what the proxies themselves cost, so it is not hidden.
            "wan": (
                {
                    "rtt_s": wan_rtt,
                    "jitter_s": wan_jitter,
                    "proxy_hop_ms": hop,
                    "proxy_cpu_ms_per_request": (
                        round(1000 * links_cpu / saturation["delivered"], 3)
                        if saturation["delivered"]
                        else None
                    ),
                }
                if wan_rtt is not None
                else None
            ),
            # The CAs and ZooKeeper on a LAN (--ca-rtt, --zk-rtt): their round trips and
            # what the proxies cost per request (with --wan-rtt too: all links together).
            "lan": (
                {
                    "ca_rtt_s": ca_rtt,
                    "zk_rtt_s": zk_rtt,
                    "proxy_cpu_ms_per_request": (
                        round(1000 * links_cpu / saturation["delivered"], 3)
                        if saturation["delivered"]
                        else None
                    ),
                }
                if ca_rtt is not None or zk_rtt is not None
                else None
            ),
            "notes": (
                "throughput: requests queued at once until the last PFX opened on its device; "
                "latency_s: per request at half the keygen rate, creation to PFX on device"
            ),
        }
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


_PROBE = "overhead-probe"


def _away(
    service_url: str,
    cas: dict[str, Any],
    zk_hosts: str,
    wan_rtt: float | None,
    wan_jitter: float,
    ca_rtt: float | None,
    zk_rtt: float | None,
) -> dict[str, tuple[dict[str, str], LinkFaults]]:
    """Link pattern -> (its targets, its latency) for what the options put away."""
    away: dict[str, tuple[dict[str, str], LinkFaults]] = {}
    if wan_rtt is not None:
        away["service"] = ({"service": service_url}, wan(wan_rtt, wan_jitter))
    if ca_rtt is not None:
        targets = {ca_target(n): str(spec["url"]) for n, spec in cas.items()}
        targets |= {
            certdb_target(n): str(s["certdb_dsn"]) for n, s in cas.items() if s.get("certdb_dsn")
        }
        away["ca:*"] = (targets, lan(ca_rtt, "--ca-rtt"))
    if zk_rtt is not None:
        away["zk:*"] = (zk_targets(zk_hosts), lan(zk_rtt, "--zk-rtt"))
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


@click.command("flow")
@click.option("--connectors", default=3, show_default=True, help="Connector processes.")
@click.option("--devices", default=300, show_default=True, help="Requests in the saturation run.")
@click.option("--key", "key_type", default="rsa2048", show_default=True, help="Profile key type.")
@click.option(
    "--keygen-seconds",
    default=5.0,
    show_default=True,
    help="Each raw keygen window (key generation time is random: short windows are noisy).",
)
@click.option(
    "--rounds", default=3, show_default=True, help="Saturation rounds between keygen windows."
)
@click.option("--paced-seconds", default=10.0, show_default=True, help="Half-load phase length.")
@click.option("--workers", type=int, default=None, help="Issuing threads per connector.")
@click.option(
    "--keypool",
    default=0,
    show_default=True,
    help="Keys each connector makes ahead (0: every key is made inside the measured rounds).",
)
@click.option(
    "--isolate/--shared",
    default=None,
    help="Isolated (the default with two CPUs or more): the leader on half the CPUs, the "
    "rest of the lab on the other half, keygen on the leader's. Shared: every process on "
    "every CPU, keygen on all of them.",
)
@click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option(
    "--ca",
    type=click.Choice(["cfssl", "openbao", "mixed"]),
    default="cfssl",
    show_default=True,
    help="The issuing CAs' vendor (openbao: each issuing CA on a 3-node Raft cluster; "
    "mixed: primary CFSSL, secondary OpenBao). The leader issues from the primary.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PNG: where one request's CPU went, against the 80 % budget.",
)
@WAN_RTT_OPTION
@WAN_JITTER_OPTION
@CA_RTT_OPTION
@ZK_RTT_OPTION
def command(
    connectors: int,
    devices: int,
    key_type: str,
    keygen_seconds: float,
    rounds: int,
    paced_seconds: float,
    workers: int | None,
    keypool: int,
    isolate: bool | None,
    run_dir: Path | None,
    json_path: Path | None,
    ca: str,
    plot_path: Path | None,
    wan_rtt: float | None,
    wan_jitter: float,
    ca_rtt: float | None,
    zk_rtt: float | None,
) -> None:
    """End-to-end throughput and latency of the PFX flow, beside the raw keygen rate."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    check_wan(wan_rtt, wan_jitter)
    check_lan(ca_rtt=ca_rtt, zk_rtt=zk_rtt)
    if connectors < 1 or devices < 1 or rounds < 1:
        raise click.BadParameter("--connectors, --devices and --rounds must be >= 1")
    if keypool < 0:
        raise click.BadParameter("--keypool must be >= 0")
    if isolate is None:
        # The question the bench answers is the connector's: how close it comes to
        # raw keygen on the host it runs on. In production that host runs the
        # connector alone (the service, the CAs, ZooKeeper and the devices are
        # other machines), so that is the default layout when it can be had.
        isolate = len(_cpus()) >= 2
    elif isolate:
        try:
            split_cpus(_cpus())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--isolate") from exc
    KeyType.parse(key_type)
    result = run_flow_bench(
        connectors=connectors,
        devices=devices,
        key_type=key_type,
        keygen_seconds=keygen_seconds,
        paced_seconds=paced_seconds,
        rounds=rounds,
        workers=workers,
        keypool=keypool,
        isolate=isolate,
        run_dir=run_dir,
        progress=lambda text: click.echo(f"... {text}", err=True),
        ca=ca,
        wan_rtt=wan_rtt,
        wan_jitter=wan_jitter,
        ca_rtt=ca_rtt,
        zk_rtt=zk_rtt,
    )
    half = result["half_load"]
    where = "cores, leader isolated" if result["isolated"] else "cores"
    low_high = result["ratio_range"]
    band = f" (keygen windows: {low_high[0]:.1%}..{low_high[1]:.1%})" if low_high else ""
    if result["ratio_own_keys"] is not None:
        band += f", {result['ratio_own_keys']:.1%} against the leader's own keys"
    click.echo(
        f"{result['key']}: delivered {result['delivered']}/{result['requested']} at "
        f"{result['throughput_per_s']}/s end to end; raw keygen {result['keygen_per_s']}/s "
        f"({result['cores']} {where}); ratio {result['ratio']:.1%}{band}; at half load "
        f"({half['rate_per_s']}/s) latency p50 {half['latency_s']['p50']} s, "
        f"p99 {half['latency_s']['p99']} s"
    )
    saturation = result["saturation"]
    cpu = saturation["cpu_ms_per_request"]
    click.echo(
        f"CPU ms per request (a key costs {saturation['keygen_ms']} ms of one core): "
        + ", ".join(f"{part} {ms}" for part, ms in cpu.items())
    )
    if saturation.get("leader_keygen_ms") is not None:
        click.echo(
            f"the leader's own keys cost it {saturation['leader_keygen_ms']} ms each; beyond "
            f"its keys it spent {saturation.get('leader_beyond_keygen_ms')} ms per request"
        )
    if result["wan"] is not None:
        hop = result["wan"]["proxy_hop_ms"]
        click.echo(
            f"service across a WAN: {result['wan']['rtt_s']} s round trip "
            f"(± {result['wan']['jitter_s']} s); the proxy itself adds {hop['added']} ms per "
            f"round trip (GET /healthz median {hop['proxied']} ms through it, {hop['direct']} ms "
            f"direct) and {result['wan']['proxy_cpu_ms_per_request']} CPU ms per request"
        )
    if result["lan"] is not None:
        lan_ = result["lan"]
        click.echo(
            f"CAs {lan_['ca_rtt_s']} s, ZooKeeper {lan_['zk_rtt_s']} s round trip away (LAN); "
            f"the proxies cost {lan_['proxy_cpu_ms_per_request']} CPU ms per request"
        )
    if json_path is not None:
        click.echo(f"wrote {write_result(json_path, result)}")
    if plot_path is not None:
        click.echo(f"wrote {cpu_budget_plot(result, plot_path)}")
