"""``pfxha bench pki``: key generation against the whole issuance pipeline, on a real CA.

    pfxha bench pki --key rsa2048 --seconds 10 --json runs/bench/pki-rsa2048.json
    pfxha bench pki --ca openbao --key rsa2048 --seconds 10 --json runs/bench/pki-bao.json

One run measures, with every core busy:

1. ``keygen_per_s``: raw key generation (one process per core, as many threads
   as the pipeline uses, nothing else);
2. ``pipeline_per_s``: keygen -> CSR -> CFSSL authsign (the lab's primary CA,
   started on loopback) -> response validation -> PKCS#12 -> CMS envelope to a
   KRA certificate, one process per core with ``--threads`` pipelines each so
   the CPU keeps generating keys while a request waits for the CA;
3. ``ratio`` = pipeline / keygen: key generation is the physical limit;
4. ``burst``: requests through the same pipeline with keys from a full
   :class:`connector.pki.KeyPool`, drained by ``--burst-threads`` threads of
   one process, as the agent does (what a takeover or a burst sees first).

Keygen and pipeline run in short alternating windows (K P, P K, ...) of
about 2.5 s, in the same worker processes, so both see the same background
load on a shared machine; an item cut by the end of a window counts by the
share of it done inside (see ``_pki_phases.credit``). Figures depend on the
machine and on what else runs on it; the JSON records the core count and
settings. The measured windows and the burst are in ``_pki_phases.py``.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from chaos.bench import _pki_phases as phases
from chaos.bench._stats import summarize, write_result
from chaos.launch.cfssl import CfsslLab
from chaos.launch.openbao import OpenBaoLab
from connector.pki import KeyType
from connector.pki.keypool import usable_cpus

__all__ = ["command", "run_pki_bench"]


def _kra_certificate() -> x509.Certificate:
    """A throw-away KRA certificate: the envelope only needs its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pfxha bench KRA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of another process so far, from /proc; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ca_lab(ca: str, run_dir: Path) -> CfsslLab | OpenBaoLab:
    """The CA the pipeline signs at: CFSSL, or a single-node OpenBao on Raft storage."""
    if ca == "cfssl":
        return CfsslLab(run_dir)
    if ca == "openbao":
        return OpenBaoLab(run_dir, nodes=1, connectors=("bench",), issuing=("primary",))
    raise ValueError(f"--ca: {ca!r} is not one of cfssl, openbao")


def _ca_cpu_seconds(lab: CfsslLab | OpenBaoLab) -> float:
    if isinstance(lab, CfsslLab):
        return _cpu_seconds(lab.pid("primary"))
    return sum(_cpu_seconds(pid) for pid in lab.pids().values())


def run_pki_bench(
    key: str,
    seconds: float,
    *,
    workers: int | None = None,
    threads: int = 2,
    template: str = "user-auth",
    pool_size: int = 64,
    burst_threads: int = 4,
    run_dir: Path | None = None,
    ca: str = "cfssl",
) -> dict[str, Any]:
    key_type = KeyType.parse(key)
    load_before = os.getloadavg()
    cores = usable_cpus()
    workers = workers or cores
    rounds = max(1, round(seconds / 2.5))
    window = seconds / rounds
    kra_pem = _kra_certificate().public_bytes(serialization.Encoding.PEM)
    with tempfile.TemporaryDirectory(prefix="pfxha-bench-pki-") as tmp:
        lab = _ca_lab(ca, run_dir or Path(tmp) / ca)
        lab.start()
        try:
            description = lab.describe()
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                # Warm the workers up (spawn + imports) outside the measured windows.
                list(pool.map(phases.worker_pid, range(workers * 2)))
                credit = {"keygen": 0.0, "pipeline": 0.0}
                cpu = {"keygen": 0.0, "pipeline": 0.0, "cfssl": 0.0}
                items = {"keygen": 0, "pipeline": 0}
                totals: list[float] = []
                ca_times: list[float] = []
                keygen_times: list[float] = []
                # Short alternating windows (K P, P K, ...), so that both modes see the
                # same background load on a shared machine.
                for i in range(rounds):
                    for mode in ("keygen", "pipeline") if i % 2 == 0 else ("pipeline", "keygen"):
                        start = time.time() + 0.05
                        cfssl_before = _ca_cpu_seconds(lab)
                        futures = [
                            pool.submit(
                                phases.measure_window,
                                mode,
                                start,
                                start + window,
                                key_type.value,
                                threads,
                                description,
                                template,
                                kra_pem,
                            )
                            for _ in range(workers)
                        ]
                        for future in futures:
                            got, item_totals, item_ca, used, done = future.result()
                            credit[mode] += got
                            if mode == "keygen":
                                keygen_times.extend(item_totals)
                            else:
                                totals.extend(item_totals)
                                ca_times.extend(item_ca)
                            cpu[mode] += used
                            items[mode] += done
                        if mode == "pipeline":
                            cpu["cfssl"] += _ca_cpu_seconds(lab) - cfssl_before
            burst = phases.burst(
                description, template, key_type, kra_pem, pool_size, threads=burst_threads
            )
        finally:
            if run_dir is None and isinstance(lab, CfsslLab):
                lab.destroy()  # its certdb server's files too
            else:
                lab.stop()
    keygen_per_s = credit["keygen"] / seconds
    pipeline_per_s = credit["pipeline"] / seconds
    keygen_cpu = cpu["keygen"] / max(1, items["keygen"])
    pipeline_cpu = cpu["pipeline"] / max(1, items["pipeline"])
    cfssl_cpu = cpu["cfssl"] / max(1, items["pipeline"])
    ratio = pipeline_per_s / keygen_per_s if keygen_per_s else None
    # RSA key generation time is random (prime search; coefficient of variation ~0.5),
    # so both rates carry sampling noise: one standard error of the ratio.
    ratio_stderr = None
    if ratio is not None and len(keygen_times) > 1 and totals:
        cv = statistics.stdev(keygen_times) / statistics.mean(keygen_times)
        ratio_stderr = ratio * cv * math.sqrt(1 / len(keygen_times) + 1 / len(totals))
    return {
        "ca": ca,
        "key": key_type.value,
        "template": template,
        "seconds": seconds,
        "cores": cores,
        "workers": workers,
        "threads_per_worker": threads,
        "rounds": rounds,
        "keygen_per_s": round(keygen_per_s, 2),
        "pipeline_per_s": round(pipeline_per_s, 2),
        "ratio": round(ratio, 4) if ratio is not None else None,
        "ratio_stderr": round(ratio_stderr, 4) if ratio_stderr is not None else None,
        # CPU cost per item (ours, and the CA's for the pipeline): what the ratio would be
        # on an otherwise idle machine, whatever else shared this one during the run.
        "cpu_ms_per_item": {
            "keygen": round(keygen_cpu * 1000, 3),
            "pipeline": round(pipeline_cpu * 1000, 3),
            ca: round(cfssl_cpu * 1000, 3),  # the CA server's CPU ("cfssl" or "openbao")
        },
        "cpu_ratio": round(keygen_cpu / (pipeline_cpu + cfssl_cpu), 4)
        if pipeline_cpu + cfssl_cpu
        else None,
        "pipeline_latency_s": summarize(totals),
        "ca_round_trip_s": summarize(ca_times),
        "burst": burst,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # The machine may be shared: its load tells how much of it the run had.
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


@click.command("pki")
@click.option(
    "--key",
    "key",
    default="rsa2048",
    show_default=True,
    help="Key type: rsa2048, rsa3072, rsa4096, p256, p384.",
)
@click.option("--seconds", default=10.0, show_default=True, help="Length of each measured phase.")
@click.option("--workers", type=int, default=None, help="Processes per phase [default: cores].")
@click.option(
    "--threads", default=2, show_default=True, help="Pipelines per process (hide CA latency)."
)
@click.option("--template", default="user-auth", show_default=True, help="CFSSL signing profile.")
@click.option(
    "--pool-size", default=64, show_default=True, help="Keys in the pool for the burst phase."
)
@click.option(
    "--burst-threads",
    default=4,
    show_default=True,
    help="Worker threads draining the pool (the agent's default loop.workers).",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="CFSSL lab directory (default: a temporary one).",
)
@click.option(
    "--ca",
    type=click.Choice(["cfssl", "openbao"]),
    default="cfssl",
    show_default=True,
    help="The issuing CA's vendor (openbao: a single-node OpenBao on Raft storage).",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
def command(
    key: str,
    seconds: float,
    workers: int | None,
    threads: int,
    template: str,
    pool_size: int,
    burst_threads: int,
    run_dir: Path | None,
    ca: str,
    json_path: Path | None,
) -> None:
    """Key generation vs. the full issuance pipeline on real CFSSL, and the key-pool burst."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if seconds <= 0:
        raise click.BadParameter("must be > 0", param_hint="--seconds")
    if threads < 1 or pool_size < 1:
        raise click.BadParameter("--threads and --pool-size must be >= 1")
    result = run_pki_bench(
        key,
        seconds,
        workers=workers,
        threads=threads,
        template=template,
        pool_size=pool_size,
        burst_threads=burst_threads,
        run_dir=run_dir,
        ca=ca,
    )
    click.echo(
        f"{result['key']} on {ca}: keygen {result['keygen_per_s']}/s, "
        f"pipeline {result['pipeline_per_s']}/s, ratio {result['ratio']:.1%} "
        f"(+/- {result['ratio_stderr'] or 0:.1%}) "
        f"[CPU-cost ratio {result['cpu_ratio']:.1%}] "
        f"({result['cores']} cores, {result['workers']} processes x "
        f"{result['threads_per_worker']} threads, {seconds:g} s each); "
        f"burst from a full pool of {pool_size}: {result['burst']['per_s']}/s"
    )
    if json_path is not None:
        click.echo(f"wrote {write_result(json_path, result)}")
