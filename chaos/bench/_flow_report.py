"""What ``pfxha bench flow`` prints: one result's lines, or a round-trip sweep's.

    for line in summary_lines(run_flow_bench(setup, load)):
        click.echo(line)
    for line in sweep_lines(run_rtt_sweep(rtts, setup, load)):
        click.echo(line)

Pure: the JSON's figures as sentences, nothing measured here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["summary_lines", "sweep_lines"]


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """One flow run: throughput against raw keygen, with its noise; where the CPU went."""
    half = result["half_load"]
    where = "cores, leader isolated" if result["isolated"] else "cores"
    low_high = result["ratio_range"]
    spread = result.get("ratio_sd")
    band = f" ± {spread:.1%} by key luck alone" if spread is not None else ""
    band += f" (keygen windows: {low_high[0]:.1%}..{low_high[1]:.1%})" if low_high else ""
    if result["ratio_own_keys"] is not None:
        band += f", {result['ratio_own_keys']:.1%} against the leader's own keys"
    if result.get("ratio_same_keys") is not None:
        band += f", {result['ratio_same_keys']:.1%} without the keys' luck"
    lines = [
        f"{result['key']}: delivered {result['delivered']}/{result['requested']} at "
        f"{result['throughput_per_s']}/s end to end; raw keygen {result['keygen_per_s']}/s "
        f"({result['cores']} {where}); ratio {result['ratio']:.1%}{band}; at half load "
        f"({half['rate_per_s']}/s) latency p50 {half['latency_s']['p50']} s, "
        f"p99 {half['latency_s']['p99']} s"
    ]
    saturation = result["saturation"]
    cpu = saturation["cpu_ms_per_request"]
    lines.append(
        f"CPU ms per request (a key costs {saturation['keygen_ms']} ms of one core): "
        + ", ".join(f"{part} {ms}" for part, ms in cpu.items())
    )
    if saturation.get("leader_keygen_ms") is not None:
        lines.append(
            f"the leader's own keys cost it {saturation['leader_keygen_ms']} ms each; beyond "
            f"its keys it spent {saturation.get('leader_beyond_keygen_ms')} ms per request"
        )
    breakdown = saturation.get("leader_cpu_ms")
    if breakdown:
        lines.append(
            "the leader's CPU ms per request: "
            + ", ".join(f"{part} {ms}" for part, ms in breakdown.items())
        )
    wan = result.get("wan")
    if wan is not None:
        hop = wan["proxy_hop_ms"]
        lines.append(
            f"service across a WAN: {wan['rtt_s']} s round trip "
            f"(± {wan['jitter_s']} s); the proxy itself adds {hop['added']} ms per "
            f"round trip (GET /healthz median {hop['proxied']} ms through it, {hop['direct']} ms "
            f"direct) and {wan['proxy_cpu_ms_per_request']} CPU ms per request"
        )
    lan = result.get("lan")
    if lan is not None:
        lines.append(
            f"CAs {lan['ca_rtt_s']} s, ZooKeeper {lan['zk_rtt_s']} s round trip away (LAN); "
            f"the proxies cost {lan['proxy_cpu_ms_per_request']} CPU ms per request"
        )
    return lines


def sweep_lines(sweep: Mapping[str, Any]) -> list[str]:
    """A round-trip sweep: one line per point, then what the proxy hop costs."""
    lines = [
        f"round trip {point['rtt_s']:g} s: delivered {point['delivered']}/"
        f"{point['requested']} at {point['throughput_per_s']}/s, raw keygen "
        f"{point['keygen_per_s']}/s, ratio {point['ratio']:.1%} "
        f"({point['ratio_own_keys']:.1%} against the leader's own keys); half load "
        f"latency p50 {point['latency_s']['p50']} s, p99 {point['latency_s']['p99']} s"
        + ("" if point["leader_kept"] else " (the leader changed: not comparable)")
        for point in sweep["sweep"]
    ]
    lines.append(f"the proxy hop adds {sweep['proxy_hop_ms']}; load {sweep['loadavg_1m_at_end']}")
    return lines
