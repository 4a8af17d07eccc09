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
   ``ratio_sd`` is how far one run's ratio moves by the random key times alone
   (the windows' spread of key CPU times, ``keygen_time_cv``, over both key
   counts); ``ratio_own_keys`` sets throughput against the leader's own keys;
   ``ratio_same_keys`` is ``ratio`` with that luck taken out (as if the windows'
   keys had cost what the leader's did): one run's estimate of what ``ratio``
   is on average;
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

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from chaos.bench import _flow_phases as phases
from chaos.bench._flow_lab import FlowLoad, FlowSetup, cpus, flow_lab, split_cpus
from chaos.bench._flow_phases import (
    KeygenWindow,
    issue_cpu_so_far,
    keygen_cpu_so_far,
    leader_metrics,
    measure_keygen,
)
from chaos.bench._flow_report import summary_lines, sweep_lines
from chaos.bench._plot import cpu_budget_plot, rtt_sweep_plot
from chaos.bench._stats import ratio_same_keys, ratio_sd, summarize, write_result
from chaos.bench.flow_sweep import parse_rtts, run_rtt_sweep
from chaos.launch.links import (
    CA_RTT_OPTION,
    WAN_JITTER_OPTION,
    WAN_RTT_OPTION,
    ZK_RTT_OPTION,
    check_lan,
    check_wan,
)
from connector.pki import KeyType

__all__ = ["command", "keygen_cpu_so_far", "run_flow_bench", "split_cpus"]

log = logging.getLogger("pfxha.bench.flow")


def run_flow_bench(
    setup: FlowSetup, load: FlowLoad, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """One run; ``isolate`` gives the leader half the CPUs and everything else the rest.

    Isolated, the leader plays a connector host of its own (as in production:
    the service, the CAs, ZooKeeper and the devices are other machines) and
    the keygen windows run on the leader's CPUs only, so ``ratio`` compares
    the connector with raw keygen on the same CPUs. Shared, every process
    competes for every CPU and ``ratio`` is the whole lab's.
    """
    devices, key_type, rounds = load.devices, load.key_type, load.rounds
    keygen_seconds, paced_seconds = load.keygen_seconds, load.paced_seconds
    with flow_lab(setup, progress) as lab:
        admin, service, meter, hop = lab.admin, lab.service, lab.meter, lab.hop
        cores, leader, isolate = lab.cores, lab.leader, setup.isolate
        connector_cpus, other_cpus, workers = lab.connector_cpus, lab.other_cpus, lab.workers
        links_cpu_before = lab.links_cpu_s()
        # Keygen windows and saturation rounds alternate (K S K S ... K), so
        # both see the same background load on a shared machine.
        windows: list[KeygenWindow] = []
        runs: list[dict[str, Any]] = []
        # What the leader's own keys cost it inside the rounds (its metrics).
        leader_keygen_cpu, leader_keys = 0.0, 0
        # And what each issuing stage cost its threads (connector/agent/stages.py).
        stage_cpu: dict[str, float] = {}
        per_round = max(1, devices // rounds)
        for index in range(rounds):
            progress(f"raw {key_type} keygen, {cores} processes, {keygen_seconds:g} s")
            windows.append(measure_keygen(key_type, keygen_seconds, cores, lab.keygen_cpus))
            progress(f"saturation round {index + 1}/{rounds}: {per_round} requests at once")
            text = leader_metrics(lab.fleet, lab.leader)
            cpu_before, keys_before = keygen_cpu_so_far(text, key_type)
            stages_before = issue_cpu_so_far(text)
            runs.append(
                phases.saturation(
                    admin,
                    service.db_path,
                    key_type,
                    per_round,
                    max(120.0, per_round),
                    prefix=f"sat{index}",
                    meter=meter,
                )
            )
            text = leader_metrics(lab.fleet, lab.leader)
            cpu_after, keys_after = keygen_cpu_so_far(text, key_type)
            for stage, seconds in issue_cpu_so_far(text).items():
                spent = seconds - stages_before.get(stage, 0.0)
                stage_cpu[stage] = stage_cpu.get(stage, 0.0) + spent
            leader_keygen_cpu += cpu_after - cpu_before
            leader_keys += keys_after - keys_before
        links_cpu = lab.links_cpu_s() - links_cpu_before
        progress(f"raw {key_type} keygen again")
        windows.append(measure_keygen(key_type, keygen_seconds, cores, lab.keygen_cpus))
        keygen_rates = [w.per_s for w in windows]
        keygen = sum(keygen_rates) / len(keygen_rates)
        window_times = KeygenWindow.pooled(windows)
        window_keys = sum(w.keys for w in windows)
        delivered = sum(r["delivered"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        cpu_ms_per_request = meter.per_item(delivered)
        # What one of the leader's own keys cost its thread, and the throughput over
        # raw keygen: NaN when unknown (no key made, no keygen measured).
        leader_key_ms = 1000 * leader_keygen_cpu / leader_keys if leader_keys else math.nan
        saturation = {
            "rounds": rounds,
            "requested": sum(r["requested"] for r in runs),
            "delivered": delivered,
            "complete": all(r["complete"] for r in runs),
            "seconds": round(seconds, 3),
            "throughput_per_s": round(delivered / seconds, 2) if seconds > 0 else 0.0,
            "round_throughput_per_s": [
                round(r["delivered"] / r["seconds"], 2) if r["seconds"] > 0 else 0.0 for r in runs
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
            "leader_keygen_ms": _rounded(leader_key_ms, 2),
            "leader_beyond_keygen_ms": (
                round(
                    cpu_ms_per_request["connector_leader"] - 1000 * leader_keygen_cpu / delivered,
                    2,
                )
                if delivered
                else None
            ),
            # Where the leader's CPU went per request: each issuing stage on the
            # issuing threads, and the rest of the process (the agent's loop, the
            # elector and kazoo, probes, the thread pool's hand-offs).
            "leader_cpu_ms": _leader_breakdown(stage_cpu, cpu_ms_per_request, delivered),
        }
        # Half the keygen rate, but never beyond what the flow sustained: with
        # a cheap key type (P-256) half the keygen rate is far past saturation.
        rate = min(keygen / 2, 0.9 * saturation["throughput_per_s"])
        progress(f"half load: {rate:.1f} requests/s for {paced_seconds:g} s")
        paced = phases.paced(admin, service.db_path, key_type, rate, paced_seconds, timeout=60.0)
        throughput = saturation["throughput_per_s"]
        raw_ratio = throughput / keygen if keygen else math.nan
        return {
            "requested": saturation["requested"],
            "delivered": saturation["delivered"],
            "throughput_per_s": throughput,
            "keygen_per_s": round(keygen, 2),
            "ratio": _rounded(raw_ratio, 4),
            # One standard deviation of that ratio from the random key times alone
            # (_stats.ratio_sd): the leader's keys in the rounds and the windows'
            # keys are two samples of the same random process.
            "ratio_sd": _significant(
                ratio_sd(
                    raw_ratio,
                    window_times.cv,
                    leader_keys=saturation["leader_keys"],
                    window_keys=window_keys,
                )
            ),
            "keygen_keys": window_keys,
            "keygen_time_cv": _rounded(window_times.cv, 3),
            # What one key cost the windows' thread, to set beside the leader's own
            # (saturation.leader_keygen_ms, thread CPU too): like for like.
            "keygen_key_cpu_ms": _rounded(1000 * window_times.mean, 2),
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
            # The ratio with the keys' luck taken out (_stats.ratio_same_keys): as if the
            # windows' keys had cost what the leader's did. Its expectation is the ratio's,
            # and one run tells it within a fraction of ratio_sd.
            "ratio_same_keys": _rounded(
                ratio_same_keys(
                    raw_ratio,
                    leader_key_cpu_ms=leader_key_ms,
                    window_key_cpu_ms=1000 * window_times.mean,
                ),
                4,
            ),
            "latency_s": paced["latency_s"],
            "key": key_type,
            "ca": setup.ca,
            "layout": "isolated" if isolate else "shared",
            "cores": cores,
            "isolated": (
                {"connector_cpus": connector_cpus, "other_cpus": other_cpus} if isolate else None
            ),
            "connectors": setup.connectors,
            "leader": leader,
            "workers_per_connector": workers,
            "keypool_per_connector": setup.keypool,
            "keygen_windows_per_s": [round(k, 2) for k in keygen_rates],
            # Other work on the machine shows here: the ratio is what matters.
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "saturation": saturation,
            "half_load": paced,
            # The service across a WAN (--wan-rtt): the latency put on each connector's
            # service link, and what the proxies themselves cost, so it is not hidden.
            "wan": (
                {
                    "rtt_s": setup.wan_rtt,
                    "jitter_s": setup.wan_jitter,
                    "proxy_hop_ms": hop,
                    "proxy_cpu_ms_per_request": (
                        round(1000 * links_cpu / saturation["delivered"], 3)
                        if saturation["delivered"]
                        else None
                    ),
                }
                if setup.wan_rtt is not None
                else None
            ),
            # The CAs and ZooKeeper on a LAN (--ca-rtt, --zk-rtt): their round trips and
            # what the proxies cost per request (with --wan-rtt too: all links together).
            "lan": (
                {
                    "ca_rtt_s": setup.ca_rtt,
                    "zk_rtt_s": setup.zk_rtt,
                    "proxy_cpu_ms_per_request": (
                        round(1000 * links_cpu / saturation["delivered"], 3)
                        if saturation["delivered"]
                        else None
                    ),
                }
                if setup.ca_rtt is not None or setup.zk_rtt is not None
                else None
            ),
            "notes": (
                "throughput: requests queued at once until the last PFX opened on its device; "
                "latency_s: per request at half the keygen rate, creation to PFX on device"
            ),
        }


def _rounded(value: float, digits: int = 4) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _significant(value: float, digits: int = 3) -> float | None:
    # A spread is read as a share of its ratio: keep its leading digits even when the
    # ratio is tiny (a cheap key type against its keygen).
    if math.isnan(value):
        return None
    return float(f"{value:.{digits}g}")


def _leader_breakdown(
    stage_cpu: dict[str, float], cpu_ms_per_request: dict[str, float], delivered: int
) -> dict[str, float] | None:
    if not delivered or not stage_cpu:
        return None
    stages = {stage: round(1000 * s / delivered, 2) for stage, s in sorted(stage_cpu.items())}
    elsewhere = cpu_ms_per_request["connector_leader"] - sum(stages.values())
    return {**stages, "outside_issuing": round(elsewhere, 2)}


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
@click.option(
    "--workers",
    type=int,
    default=None,
    help=(
        "Each connector's loop.workers: requests per poll when saturated "
        "(default: the connector's, more with many CPUs)."
    ),
)
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
    help="PNG: where one request's CPU went, against the 80 % budget; with --sweep-rtt, "
    "throughput and p50/p99 latency per round trip.",
)
@click.option(
    "--sweep-rtt",
    "sweep_rtt",
    default=None,
    help="Round trips (seconds, comma-separated, e.g. 0,0.02,0.08,0.15) to put on every "
    "connector's service link in turn, in one lab: one saturation round of --devices "
    "and one half-load phase each (chaos/bench/flow_sweep.py). Not with --wan-rtt.",
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
    sweep_rtt: str | None,
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
        isolate = len(cpus()) >= 2
    elif isolate:
        try:
            split_cpus(cpus())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--isolate") from exc
    KeyType.parse(key_type)
    setup = FlowSetup(
        connectors=connectors, workers=workers, keypool=keypool, isolate=isolate,
        run_dir=run_dir, ca=ca, wan_rtt=wan_rtt, wan_jitter=wan_jitter, ca_rtt=ca_rtt,
        zk_rtt=zk_rtt,
    )  # fmt: skip
    load = FlowLoad(
        devices=devices, key_type=key_type, keygen_seconds=keygen_seconds,
        paced_seconds=paced_seconds, rounds=rounds,
    )  # fmt: skip

    def progress(text: str) -> None:
        click.echo(f"... {text}", err=True)

    if sweep_rtt is not None:
        if wan_rtt is not None or ca_rtt is not None or zk_rtt is not None:
            raise click.UsageError("--sweep-rtt sets the service's round trip: not with --*-rtt")
        try:
            rtts = parse_rtts(sweep_rtt)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--sweep-rtt") from exc
        sweep = run_rtt_sweep(rtts, setup, load, progress)
        for line in sweep_lines(sweep):
            click.echo(line)
        if json_path is not None:
            click.echo(f"wrote {write_result(json_path, sweep)}")
        if plot_path is not None:
            click.echo(f"wrote {rtt_sweep_plot(sweep, plot_path)}")
        return
    result = run_flow_bench(setup, load, progress)
    for line in summary_lines(result):
        click.echo(line)
    if json_path is not None:
        click.echo(f"wrote {write_result(json_path, result)}")
    if plot_path is not None:
        click.echo(f"wrote {cpu_budget_plot(result, plot_path)}")
