"""The measured phases of ``pfxha bench flow``: raw keygen, saturation rounds, half load.

    window = measure_keygen("rsa2048", 5.0, processes=1, cpus=[0])
    window.per_s, window.keys, window.times.cv      # keys/s; how many; spread of their CPU
    sat = saturation(admin, db_path, "rsa2048", 100, 120.0, prefix="sat1", meter=meter)
    half = paced(admin, db_path, "rsa2048", window.per_s / 2, 10.0, timeout=60.0)
    cpu_s, keys = leader_keygen(fleet, "c1", "rsa2048")   # from its /metrics
    text = leader_metrics(fleet, "c1")                     # one scrape for both readings:
    keygen_cpu_so_far(text, "rsa2048"), issue_cpu_so_far(text)   # {"key": 21.3, "ca": 0.9, ...} s

"Delivered" means the device checked in and opened the PFX: a
:class:`DeliveryWatcher` plays the push service (it reads the service's
database for issued requests) and checks those devices in at once over HTTP.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chaos.bench._cpu import CpuMeter
from chaos.bench._stats import KeyTimes, summarize
from chaos.bench._tenant import Device, Tenant, checkin
from chaos.launch.connector import ConnectorFleet
from connector.pki import KeyType, generate_key

__all__ = [
    "DeliveryWatcher",
    "KeygenWindow",
    "issue_cpu_so_far",
    "keygen_cpu_so_far",
    "leader_keygen",
    "leader_metrics",
    "measure_keygen",
    "paced",
    "saturation",
]


def _bind_worker(cpus: list[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _keygen_worker(key_type: str, seconds: float) -> tuple[int, KeyTimes]:
    """Keys made in ``seconds``, and the CPU times of all but the first.

    The first key of a fresh process also pays its one-time set-up (the library's
    first use): it counts towards the rate, not towards the keys' spread.
    """
    kt = KeyType.parse(key_type)
    end = time.monotonic() + seconds
    count, times = 0, KeyTimes()
    while time.monotonic() < end:
        started = time.thread_time()  # the key's own CPU: preemption is not the key's spread
        generate_key(kt)
        if count:
            times = times.add(time.thread_time() - started)
        count += 1
    return count, times


@dataclass(frozen=True)
class KeygenWindow:
    """One raw keygen window: its rate, its keys, and their CPU times (how random they are)."""

    per_s: float
    keys: int
    times: KeyTimes

    @staticmethod
    def pooled(windows: Sequence[KeygenWindow]) -> KeyTimes:
        """Every window's keys as one sample (the spread is the same random process)."""
        return KeyTimes.merge(w.times for w in windows)


def measure_keygen(
    key_type: str, seconds: float, processes: int, cpus: list[int] | None = None
) -> KeygenWindow:
    """Keys per second with ``processes`` processes (bound to ``cpus``) for ``seconds``."""
    with cf.ProcessPoolExecutor(
        max_workers=processes, initializer=_bind_worker, initargs=(cpus,)
    ) as pool:
        list(pool.map(_warm, range(processes)))  # start the workers before timing
        started = time.monotonic()
        samples = list(pool.map(_keygen_worker, [key_type] * processes, [seconds] * processes))
        elapsed = time.monotonic() - started
    keys = sum(count for count, _ in samples)
    return KeygenWindow(keys / max(elapsed, seconds), keys, KeyTimes.merge(t for _, t in samples))


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
        seen_version: int | None = None
        last_query = 0.0
        try:
            while not self._stop.is_set():
                # A push reaches a device within milliseconds: look every 2 ms whether
                # the service wrote anything (PRAGMA data_version, a counter read that
                # costs microseconds), and query only then (or every 20 ms regardless).
                # A 20 ms poll added ~10 ms to the end of every saturation round, which
                # the bench counted against the connector's throughput.
                issued: list[str] = []
                try:
                    version = int(db.execute("PRAGMA data_version").fetchone()[0])
                    if version != seen_version or time.monotonic() - last_query >= 0.02:
                        seen_version, last_query = version, time.monotonic()
                        issued = self._issued_devices(db)
                except sqlite3.Error as exc:
                    self.failures.append(f"poll: {exc}")
                for device_id in issued:
                    with self._lock:
                        if device_id not in self.devices or device_id in self._busy:
                            continue
                        self._busy.add(device_id)
                    self._pool.submit(self._checkin, self.devices[device_id])
                self._stop.wait(0.002)
        finally:
            db.close()

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def saturation(
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


def paced(
    admin: httpx.Client,
    db_path: Path,
    key_type: str,
    rate: float,
    seconds: float,
    timeout: float,
    prefix: str = "paced",
) -> dict[str, Any]:
    """Requests at ``rate`` per second: each made due by adding its user to the group."""
    count = max(1, int(rate * seconds))
    tenant = Tenant(admin, prefix=prefix, key_type=key_type)
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
_ISSUE_CPU_METRIC = "pfxha_connector_issue_cpu_seconds"


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


def issue_cpu_so_far(metrics_text: str) -> dict[str, float]:
    """CPU seconds per issuing stage so far (connector/agent/stages.py), from /metrics."""
    stages: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != _ISSUE_CPU_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                stages[sample.labels["stage"]] = sample.value
    return stages


def leader_metrics(fleet: ConnectorFleet, leader: str) -> str:
    """The leader's /metrics text (read it once for several readings)."""
    response = httpx.get(fleet.metrics_url(leader) + "/metrics", timeout=5.0)
    response.raise_for_status()
    return response.text


def leader_keygen(fleet: ConnectorFleet, leader: str, key_type: str) -> tuple[float, int]:
    return keygen_cpu_so_far(leader_metrics(fleet, leader), key_type)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)
