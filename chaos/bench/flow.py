"""``pfxha bench flow``: the whole PFX flow end to end, beside this machine's raw keygen rate.

    pfxha bench flow --connectors 3 --devices 300 --json runs/bench/flow.json

One run starts a 3-node ZooKeeper, the CFSSL lab (root + two issuing CAs), the
stand-in service and ``--connectors`` connector processes, then measures:

1. ``keygen_per_s``: raw key generation of the profile's key type with every
   core (one process per core, nothing else running but idle servers),
   measured before and after the flow and averaged, so both see the same
   background load;
2. saturation: ``--devices`` requests queued at once (one assignment makes
   them all due); ``throughput_per_s`` = requests / time until the last PFX
   was delivered to its device (device check-in opened it with its
   management key). ``ratio`` = throughput / keygen;
3. half load: requests created at half the measured keygen rate for
   ``--paced-seconds``; ``latency_s`` is per request, from creation to the
   device holding its PFX.

"Delivered" means the device checked in and opened the PFX: a watcher polls
the service for issued requests and checks those devices in at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx

from chaos.bench._stats import summarize
from chaos.bench._tenant import Device, Tenant, checkin
from chaos.launch.cfssl import CfsslLab
from chaos.launch.connector import ConnectorFleet
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from connector.pki import KeyType, generate_key

__all__ = ["command", "run_flow_bench"]

log = logging.getLogger("pfxha.bench.flow")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _keygen_worker(key_type: str, seconds: float) -> int:
    kt = KeyType.parse(key_type)
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        generate_key(kt)
        count += 1
    return count


def measure_keygen(key_type: str, seconds: float, processes: int) -> float:
    """Keys per second with ``processes`` processes generating for ``seconds``."""
    with cf.ProcessPoolExecutor(max_workers=processes) as pool:
        list(pool.map(_warm, range(processes)))  # start the workers before timing
        started = time.monotonic()
        counts = list(pool.map(_keygen_worker, [key_type] * processes, [seconds] * processes))
        elapsed = time.monotonic() - started
    return sum(counts) / max(elapsed, seconds)


def _warm(_: int) -> None:
    return None


class DeliveryWatcher:
    """Checks devices in as soon as the service has their PFX; records when each arrived."""

    def __init__(self, client: httpx.Client, devices: dict[str, Device]) -> None:
        self.client = client
        self.devices = devices
        self.delivered: dict[str, float] = {}  # request id -> monotonic time
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rows = self.client.get("/api/v1/read/requests", params={"state": "issued"}).json()
            except httpx.HTTPError as exc:
                self.failures.append(f"poll: {exc}")
                time.sleep(0.05)
                continue
            mine = [r for r in rows if r["device_id"] in self.devices]
            for row in mine:
                device = self.devices[row["device_id"]]
                try:
                    for item in checkin(self.client, device):
                        self.delivered.setdefault(item.request_id, time.monotonic())
                except Exception as exc:  # a PFX that does not open is a failure we report
                    self.failures.append(f"{device.id}: {exc}")
            if not mine:
                time.sleep(0.01)

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _saturation(
    admin: httpx.Client, key_type: str, devices_n: int, timeout: float
) -> dict[str, Any]:
    tenant = Tenant(admin, prefix="sat", key_type=key_type)
    # Users, memberships and devices first, the assignment last: it queues
    # every request in one transaction, so they are all "created" at once.
    tenant.create_profile(assign=False)
    devices = tenant.enroll(devices_n)
    watcher = DeliveryWatcher(admin, {d.id: d for d in devices})
    watcher.start()
    created = time.monotonic()
    tenant.assign()
    complete = watcher.wait(devices_n, timeout)
    watcher.stop()
    elapsed = (max(watcher.delivered.values()) if watcher.delivered else time.monotonic()) - created
    latencies = [t - created for t in watcher.delivered.values()]
    return {
        "requested": devices_n,
        "delivered": len(watcher.delivered),
        "complete": complete,
        "seconds": round(elapsed, 3),
        "throughput_per_s": round(len(watcher.delivered) / elapsed, 2) if elapsed > 0 else 0.0,
        "latency_s": summarize(latencies),
        "failures": watcher.failures[:10],
    }


def _paced(
    admin: httpx.Client, key_type: str, rate: float, seconds: float, timeout: float
) -> dict[str, Any]:
    """Requests at ``rate`` per second: each made due by adding its user to the group."""
    count = max(1, int(rate * seconds))
    tenant = Tenant(admin, prefix="paced", key_type=key_type)
    tenant.create_profile()
    devices = tenant.enroll(count, join_group=False)
    watcher = DeliveryWatcher(admin, {d.id: d for d in devices})
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
    workers: int | None = None,
    run_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    cores = _cores()
    workers = workers or 2 * cores
    own_dir = run_dir is None
    base = Path(tempfile.mkdtemp(prefix="pfxha-bench-flow-")) if run_dir is None else run_dir
    base.mkdir(parents=True, exist_ok=True)
    zk = ZooKeeperEnsemble(base / "zookeeper", size=3, heap_mb=128)
    lab = CfsslLab(base / "cfssl")
    service = ServiceProcess(base / "service", extra_args=["--renewal-interval", "0"])
    fleet: ConnectorFleet | None = None
    try:
        progress("starting ZooKeeper x3, CFSSL, the service")
        zk.start()
        lab.start()
        service.start()
        fleet = ConnectorFleet(
            base / "connectors",
            count=connectors,
            cluster="bench",
            zk_hosts=zk.hosts,
            service_url=service.url,
            cas=lab.describe(),
            loop={"batch_size": 100, "workers": workers, "poll_wait_s": 1.0},
        )
        progress(f"starting {connectors} connectors")
        fleet.start()
        leader = fleet.wait_for_leader()
        with httpx.Client(base_url=service.url, timeout=30.0) as admin:
            # Let the key pools fill and the servers settle before measuring.
            time.sleep(2.0)
            progress(f"raw {key_type} keygen with {cores} processes, {keygen_seconds:g} s")
            keygen_before = measure_keygen(key_type, keygen_seconds, cores)
            progress(f"saturation: {devices} requests at once")
            saturation = _saturation(admin, key_type, devices, timeout=max(120.0, devices))
            progress(f"raw {key_type} keygen again")
            keygen_after = measure_keygen(key_type, keygen_seconds, cores)
            keygen = (keygen_before + keygen_after) / 2
            rate = keygen / 2
            progress(f"half load: {rate:.1f} requests/s for {paced_seconds:g} s")
            paced = _paced(admin, key_type, rate, paced_seconds, timeout=60.0)
        throughput = saturation["throughput_per_s"]
        return {
            "requested": saturation["requested"],
            "delivered": saturation["delivered"],
            "throughput_per_s": throughput,
            "keygen_per_s": round(keygen, 2),
            "ratio": round(throughput / keygen, 4) if keygen else None,
            "latency_s": paced["latency_s"],
            "key": key_type,
            "cores": cores,
            "connectors": connectors,
            "leader": leader,
            "workers_per_connector": workers,
            "keygen_per_s_before": round(keygen_before, 2),
            # Other work on the machine shows here: the ratio is what matters.
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "keygen_per_s_after": round(keygen_after, 2),
            "saturation": saturation,
            "half_load": paced,
            "notes": (
                "throughput: requests queued at once until the last PFX opened on its device; "
                "latency_s: per request at half the keygen rate, creation to PFX on device"
            ),
        }
    finally:
        if fleet is not None:
            fleet.stop(grace=5)
        service.stop(grace=5)
        lab.stop()
        zk.stop()
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


@click.command("flow")
@click.option("--connectors", default=3, show_default=True, help="Connector processes.")
@click.option("--devices", default=300, show_default=True, help="Requests in the saturation run.")
@click.option("--key", "key_type", default="rsa2048", show_default=True, help="Profile key type.")
@click.option("--keygen-seconds", default=5.0, show_default=True, help="Each raw keygen window.")
@click.option("--paced-seconds", default=10.0, show_default=True, help="Half-load phase length.")
@click.option("--workers", type=int, default=None, help="Issuing threads per connector.")
@click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
def command(
    connectors: int,
    devices: int,
    key_type: str,
    keygen_seconds: float,
    paced_seconds: float,
    workers: int | None,
    run_dir: Path | None,
    json_path: Path | None,
) -> None:
    """End-to-end throughput and latency of the PFX flow, beside the raw keygen rate."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if connectors < 1 or devices < 1:
        raise click.BadParameter("--connectors and --devices must be >= 1")
    KeyType.parse(key_type)
    result = run_flow_bench(
        connectors=connectors,
        devices=devices,
        key_type=key_type,
        keygen_seconds=keygen_seconds,
        paced_seconds=paced_seconds,
        workers=workers,
        run_dir=run_dir,
        progress=lambda text: click.echo(f"... {text}", err=True),
    )
    half = result["half_load"]
    click.echo(
        f"{result['key']}: delivered {result['delivered']}/{result['requested']} at "
        f"{result['throughput_per_s']}/s end to end; raw keygen {result['keygen_per_s']}/s "
        f"({result['cores']} cores); ratio {result['ratio']:.1%}; at half load "
        f"({half['rate_per_s']}/s) latency p50 {half['latency_s']['p50']} s, "
        f"p99 {half['latency_s']['p99']} s"
    )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {json_path}")
