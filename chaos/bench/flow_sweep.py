"""``pfxha bench flow --sweep-rtt``: throughput and latency as the service moves away.

    pfxha bench flow --sweep-rtt 0,0.02,0.08,0.15 --json runs/bench/flow-rtt.json \\
        --plot runs/bench/flow-rtt.png

One lab for every point: each connector reaches the service through its own
link (``chaos/launch/links.py``), and the link's round trip is changed
between points, so every point runs on the same servers, the same leader and
the same background load. Per round trip, in order: a raw keygen window on
the leader's CPUs, one saturation round of ``--devices`` requests queued at
once (``throughput_per_s``, and ``ratio`` against the keygen windows just
before and after it), then a half-load phase (``latency_s``: creation to PFX
on the device, at half the keygen rate or 0.9 of that point's throughput,
whichever is lower). Round trip 0 still goes through the link (with no
latency), so the points differ by the latency alone; ``proxy_hop_ms`` says
what the hop itself costs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from chaos.bench import _flow_phases as phases
from chaos.bench._flow_lab import FlowLab, FlowLoad, FlowSetup, flow_lab
from chaos.bench._stats import summarize

__all__ = ["parse_rtts", "run_rtt_sweep"]


def parse_rtts(text: str) -> list[float]:
    """``"0,0.02,0.08"`` -> [0.0, 0.02, 0.08]; each 0 or more seconds, at least one."""
    try:
        rtts = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"--sweep-rtt takes seconds separated by commas, got {text!r}") from exc
    if not rtts or any(not 0 <= rtt < 10 for rtt in rtts):
        raise ValueError(f"--sweep-rtt takes round trips in [0, 10) seconds, got {text!r}")
    return rtts


def run_rtt_sweep(
    rtts: Sequence[float],
    setup: FlowSetup,
    load: FlowLoad,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """One lab, one saturation round and one half-load phase per round trip (the
    setup's own ``wan_rtt`` is replaced by the first of ``rtts``)."""
    wan_jitter = setup.wan_jitter
    setup = replace(setup, wan_rtt=rtts[0], wan_jitter=min(wan_jitter, rtts[0]))
    devices, key_type, keygen_seconds = load.devices, load.key_type, load.keygen_seconds
    paced_seconds = load.paced_seconds
    points: list[dict[str, Any]] = []
    with flow_lab(setup, progress) as lab:
        links_cpu_before = lab.links_cpu_s()
        windows = [_keygen(lab, key_type, keygen_seconds, progress)]
        for index, rtt in enumerate(rtts):
            lab.set_wan(rtt, min(wan_jitter, rtt))
            progress(f"round trip {rtt:g} s: {devices} requests at once")
            before = lab.fleet.leader()
            cpu_before, keys_before = phases.leader_keygen(lab.fleet, lab.leader, key_type)
            run = phases.saturation(
                lab.admin,
                lab.service.db_path,
                key_type,
                devices,
                max(120.0, devices),
                prefix=f"rtt{index}",
                meter=lab.meter,
            )
            cpu_after, keys_after = phases.leader_keygen(lab.fleet, lab.leader, key_type)
            after = lab.fleet.leader()
            windows.append(_keygen(lab, key_type, keygen_seconds, progress))
            keygen = (windows[-2] + windows[-1]) / 2
            throughput = run["delivered"] / run["seconds"] if run["seconds"] > 0 else 0.0
            key_ms = 1000 * (cpu_after - cpu_before) / max(1, keys_after - keys_before)
            rate = max(0.1, min(keygen / 2, 0.9 * throughput))
            progress(f"round trip {rtt:g} s: half load, {rate:.1f} requests/s")
            half = phases.paced(
                lab.admin,
                lab.service.db_path,
                key_type,
                rate,
                paced_seconds,
                timeout=60.0,
                prefix=f"paced{index}",
            )
            points.append(
                {
                    "rtt_s": rtt,
                    # A loaded machine can cost the pinned leader its lease: then another
                    # connector, on other CPUs, issued, and the point is not comparable.
                    "leader_kept": before == after and after is not None and after[0] == lab.leader,
                    "leader_after": list(after) if after is not None else None,
                    "requested": run["requested"],
                    "delivered": run["delivered"],
                    "complete": run["complete"],
                    "seconds": run["seconds"],
                    "throughput_per_s": round(throughput, 2),
                    "keygen_per_s": round(keygen, 2),
                    "ratio": round(throughput / keygen, 4) if keygen else None,
                    # Against the leader's own keys in this round (its metrics).
                    "ratio_own_keys": round(throughput * key_ms / (1000 * lab.cores), 4),
                    "saturation_latency_s": summarize(run["latencies"]),
                    "half_load": {k: v for k, v in half.items() if k != "failures"},
                    "latency_s": half["latency_s"],
                    "failures": (run["failures"] + half["failures"])[:10],
                }
            )
        links_cpu = lab.links_cpu_s() - links_cpu_before
        delivered = sum(p["delivered"] for p in points)
        return {
            "sweep": points,
            "delivered": delivered,
            "requested": sum(p["requested"] for p in points),
            "key": key_type,
            "ca": setup.ca,
            "layout": "isolated" if setup.isolate else "shared",
            "cores": lab.cores,
            "connectors": setup.connectors,
            "leader": lab.leader,
            "workers_per_connector": lab.workers,
            "keygen_windows_per_s": [round(k, 2) for k in windows],
            "wan_jitter_s": wan_jitter,
            # What the links themselves cost: one hop's added round trip (GET /healthz
            # median through a fault-free link against direct), and their CPU.
            "proxy_hop_ms": lab.hop,
            "proxy_cpu_ms_per_request": round(1000 * links_cpu / delivered, 3)
            if delivered
            else None,
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "notes": (
                "per round trip: throughput of requests queued at once until the last PFX "
                "opened on its device, ratio against the keygen windows before and after it; "
                "latency_s at half load, creation to PFX on device"
            ),
        }


def _keygen(lab: FlowLab, key_type: str, seconds: float, progress: Callable[[str], None]) -> float:
    progress(f"raw {key_type} keygen, {lab.cores} processes, {seconds:g} s")
    return phases.measure_keygen(key_type, seconds, lab.cores, lab.keygen_cpus).per_s
