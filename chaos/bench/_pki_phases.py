"""The measured phases of ``pfxha bench pki``: keygen/pipeline windows and the pool burst.

    pipeline = Pipeline(lab.describe(), "user-auth", KeyType.RSA2048, kra_pem)
    total_s, ca_s = pipeline.run_one(generate_key(KeyType.RSA2048))  # one sealed PFX
    # In each worker process, one window of "keygen" alone or the whole "pipeline":
    got, totals, ca_times, cpu_s, items = measure_window(
        "pipeline", start, start + 2.5, "rsa2048", 2, description, "user-auth", kra_pem
    )
    credit([(0.0, 1.0), (2.0, 4.0)], 0.0, 3.0)  # 1.5: the second item is half inside
    burst(description, "user-auth", KeyType.RSA2048, kra_pem, 64, threads=4)  # {"per_s": ...}

:func:`measure_window` and :func:`worker_pid` run in the command's spawned
worker processes (``worker_pid`` warms them up: spawn and imports); the
pipelines a worker builds live as long as it does, so clients and
connections are reused from one window to the next. :func:`burst` runs in
the command's own process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import click
from cryptography import x509

from chaos.bench._stats import summarize
from connector.ca import CARouter, router_from_description
from connector.pki import (
    KeyPool,
    KeyType,
    PrivateKey,
    ProfileTemplate,
    csr_for_profile,
    generate_key,
    pack_pfx,
    seal,
)
from connector.pki.keypool import usable_cpus

__all__ = ["Pipeline", "burst", "credit", "measure_window", "worker_pid"]

_PROFILE_SUBJECT = "CN={{UserName}},O=pfxha bench"
_PROFILE_SANS = ("UPN={{UserPrincipalName}}", "email={{EmailAddress}}")


class Pipeline:
    """Everything after key generation, for one thread of one process."""

    def __init__(
        self, description: Mapping[str, Any], template: str, key_type: KeyType, kra_pem: bytes
    ) -> None:
        # The primary CA only: the benchmark measures issuance, not failover.
        primary = {"primary": description["cas"]["primary"]}
        self.router: CARouter = router_from_description(
            {"cas": primary, "templates": {template: ["primary"]}}, call_timeout_s=10.0
        )
        self.template = template
        self.kra = x509.load_pem_x509_certificate(kra_pem)
        self.profile = ProfileTemplate("bench", _PROFILE_SUBJECT, _PROFILE_SANS, key_type, template)
        self.count = 0

    def run_one(self, key: PrivateKey) -> tuple[float, float]:
        """Issue and package one certificate; returns (seconds total, seconds at the CA)."""
        started = time.perf_counter()
        n = self.count = self.count + 1
        variables = {
            "UserName": f"user{n}",
            "UserPrincipalName": f"user{n}@bench.test",
            "EmailAddress": f"user{n}@bench.test",
            "DeviceId": f"dev-{os.getpid()}-{threading.get_ident()}-{n}",
        }
        csr = csr_for_profile(key, self.profile, variables)
        before_ca = time.perf_counter()
        issued = self.router.issue(csr, self.template, f"bench-{n}", time.monotonic() + 30)
        ca_time = time.perf_counter() - before_ca
        envelope = seal(pack_pfx(key, issued.certificate, issued.chain, "bench"), self.kra)
        if not envelope:  # pragma: no cover - seal always returns bytes
            raise RuntimeError("empty envelope")
        return time.perf_counter() - started, ca_time


def _wait_until(wall_time: float) -> None:
    delay = wall_time - time.time()
    if delay > 0:
        time.sleep(delay)


def credit(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Items completed in [start, end]; one that straddles ``end`` counts by its share inside.

    Every item starts inside the window, and the ones running at ``end`` are finished
    outside it, so neither mode gains or loses the work cut at the boundary.
    """
    total = 0.0
    for s, e in spans:
        if e <= s:
            continue
        total += max(0.0, min(e, end) - max(s, start)) / (e - s)
    return total


# Pipelines live as long as the worker process: clients and connections are reused.
_PIPELINES: list[Pipeline] = []


def measure_window(
    mode: str,
    start: float,
    end: float,
    key_type: str,
    threads: int,
    description: dict[str, Any],
    template: str,
    kra_pem: bytes,
) -> tuple[float, list[float], list[float], float, int]:
    """One measured window in one worker process: ``keygen`` alone or the whole ``pipeline``.

    Returns the window credit, per-item latencies and CA times, and the process CPU
    seconds spent on all items started in the window (finished or not) with their count.
    """
    kt = KeyType.parse(key_type)
    # The same number of threads in both modes: on a machine shared with other work
    # the scheduler's share follows the runnable threads, and OpenSSL releases the GIL
    # while generating, so extra keygen threads add no speed of their own.
    lanes = threads
    if mode == "pipeline":
        while len(_PIPELINES) < lanes:
            _PIPELINES.append(Pipeline(description, template, kt, kra_pem))
    lock = threading.Lock()
    spans: list[tuple[float, float]] = []
    totals: list[float] = []
    ca_times: list[float] = []

    def lane(index: int) -> None:
        _wait_until(start)
        while time.time() < end:
            began = time.time()
            key = generate_key(kt)
            ca_time = 0.0
            if mode == "pipeline":
                _, ca_time = _PIPELINES[index].run_one(key)
            finished = time.time()
            with lock:
                spans.append((began, finished))
                totals.append(finished - began)
                ca_times.append(ca_time)

    runners = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    _wait_until(start)
    cpu_before = time.process_time()
    for r in runners:
        r.start()
    for r in runners:
        r.join()
    cpu = time.process_time() - cpu_before
    items = len(spans)
    return credit(spans, start, end), totals, ca_times, cpu, items


def worker_pid(_: int) -> int:
    """Nothing but the worker's pid: mapped over the pool to warm the workers up."""
    return os.getpid()


def burst(
    description: Mapping[str, Any],
    template: str,
    key_type: KeyType,
    kra_pem: bytes,
    pool_size: int,
    threads: int,
) -> dict[str, Any]:
    """Drain a full key pool through the pipeline with ``threads`` threads."""
    pool = KeyPool({key_type: pool_size}, workers=usable_cpus()).start()
    try:
        if not pool.wait_full(timeout=600):
            raise click.ClickException("the key pool did not fill within 600 s")
        pipelines = [Pipeline(description, template, key_type, kra_pem) for _ in range(threads)]
        latencies: list[float] = []
        lock = threading.Lock()
        remaining = [pool_size]

        def drain(pipeline: Pipeline) -> None:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                t0 = time.perf_counter()
                key = pool.take(key_type)
                pipeline.run_one(key)
                with lock:
                    latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        runners = [threading.Thread(target=drain, args=(p,)) for p in pipelines]
        for r in runners:
            r.start()
        for r in runners:
            r.join()
        elapsed = time.perf_counter() - started
        stats = pool.stats()
        for p in pipelines:
            p.router.close()
    finally:
        pool.stop()
    return {
        "pool_size": pool_size,
        "threads": threads,
        "seconds": round(elapsed, 4),
        "per_s": round(pool_size / elapsed, 2),
        "pool_hits": stats["hits"],
        "pool_misses": stats["misses"],
        "latency_s": summarize(latencies),
    }
