"""Plots of ``pfxha bench flow``: where one request's CPU went; what a WAN does to the flow.

    cpu_budget_plot(result, Path("runs/bench/flow.png"), target=0.8)
    rtt_sweep_plot(sweep_result, Path("runs/bench/flow-rtt.png"))   # --sweep-rtt
    ratio_runs_plot(summarize_runs(results, 0.9), Path("runs/bench/flow-runs.png"))

One horizontal bar, stacked: the leader's key generation (what its own keys
cost it, the leader's CPU less ``leader_beyond_keygen_ms``; the keygen windows'
``keygen_ms`` for results that lack it), the rest of the leader, then the
other parts of the lab. The dashed line is the CPU one request may cost for
the flow to reach ``target`` of raw keygen: over the whole bar when every
process shares the CPUs, over the leader's two segments when the leader is
isolated (the default layout).
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist
from typing import Any

__all__ = ["cpu_budget_plot", "ratio_runs_plot", "rtt_sweep_plot"]


def _saved(fig: Any, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` (making its directory) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_OTHER_PARTS = (
    ("service", "stand-in service"),
    ("bench_and_devices", "devices and bench"),
    ("zookeeper", "ZooKeeper x3"),
    ("cfssl", "CFSSL"),
    ("openbao", "OpenBao"),
    ("mixed", "CFSSL + OpenBao"),
    ("connectors_standby", "standby connectors"),
)


def cpu_budget_plot(result: dict[str, Any], path: Path, *, target: float = 0.8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saturation = result["saturation"]
    cpu = saturation["cpu_ms_per_request"]
    leader = float(cpu["connector_leader"])
    beyond = saturation.get("leader_beyond_keygen_ms")
    key_ms = leader - beyond if beyond is not None else float(saturation["keygen_ms"] or 0.0)
    leader_rest = max(0.0, leader - key_ms)
    segments = [("leader: key generation", key_ms), ("leader: everything else", leader_rest)]
    segments += [(label, float(cpu.get(part, 0.0))) for part, label in _OTHER_PARTS]
    isolated = bool(result.get("isolated"))
    # Budget: the CPUs the ratio is about, divided by the target rate.
    budget = 1000 * result["cores"] / (target * result["keygen_per_s"])

    breakdown = {
        part: float(ms)
        for part, ms in (saturation.get("leader_cpu_ms") or {}).items()
        if part != "key"
    }
    if breakdown:
        fig, (ax, stages_ax) = plt.subplots(
            2, 1, figsize=(9, 5.6), gridspec_kw={"height_ratios": [1, 1.6]}
        )
        _leader_stages(stages_ax, breakdown, key_ms)
    else:
        fig, ax = plt.subplots(figsize=(9, 2.8))
    left = 0.0
    palette = plt.get_cmap("tab10")
    for index, (label, width) in enumerate(segments):
        ax.barh([0], [width], left=left, color=palette(index % 10), label=label)
        left += width
    scope = "the leader's share" if isolated else "the whole bar"
    ax.axvline(budget, color="black", linestyle="--", label=f"{target:.0%} budget ({scope})")
    ax.set_yticks([])
    ax.set_xlabel("CPU ms per delivered request")
    layout = "leader isolated" if isolated else "every process on every CPU"
    ax.set_title(
        f"{result['key']}: {result['throughput_per_s']}/s, ratio {result['ratio']:.1%} "
        f"of raw keygen ({layout})"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=4, fontsize=8, frameon=False)
    return _saved(fig, path)


def _leader_stages(ax: Any, breakdown: dict[str, float], key_ms: float) -> None:
    """The leader's CPU beyond its key, one bar per issuing stage (largest on top)."""
    labels = {
        "outside_issuing": "outside the stages (loop, elector, probes)",
        "ca": "ca (CA call and its checks)",
        "csr": "csr (signature)",
        "pfx": "pfx (PKCS#12)",
        "intent": "intent (share of the batch call)",
        "upload": "upload (share of the batch call)",
        "seal": "seal (KRA envelope)",
        "other": "other (events, fences)",
    }
    parts = sorted(breakdown.items(), key=lambda item: item[1])
    ax.barh(range(len(parts)), [ms for _, ms in parts], color="tab:orange")
    ax.set_yticks(range(len(parts)), [labels.get(part, part) for part, _ in parts], fontsize=8)
    for index, (_, ms) in enumerate(parts):
        share = f" ({ms / key_ms:.1%} of a key)" if key_ms else ""
        ax.annotate(
            f"{ms:.2f} ms{share}",
            (ms, index),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    total = sum(breakdown.values())
    ax.set_xlim(right=max(ms for _, ms in parts) * 1.6)
    ax.set_xlabel("leader CPU ms per delivered request, beyond its key")
    ax.set_title(f"where the leader's {total:.1f} ms beyond its key went", fontsize=10)


def rtt_sweep_plot(result: dict[str, Any], path: Path) -> Path:
    """Throughput (beside raw keygen) and half-load p50/p99 latency per service round trip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["sweep"]
    rtt_ms = [1000 * p["rtt_s"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(rtt_ms, [p["throughput_per_s"] for p in points], "o-", label="delivered")
    left.plot(rtt_ms, [p["keygen_per_s"] for p in points], "s--", color="grey", label="raw keygen")
    for x, p in zip(rtt_ms, points, strict=True):
        if p["ratio"] is not None:
            left.annotate(
                f"{p['ratio']:.0%}" + ("" if p.get("leader_kept", True) else " *"),
                (x, p["throughput_per_s"]),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=8,
            )
    left.set_xlabel("service round trip (ms)")
    left.set_ylabel("requests / s")
    left.set_ylim(bottom=0)
    changed = not all(p.get("leader_kept", True) for p in points)
    left.set_title("throughput (ratio to raw keygen)" + ("; * leader changed" if changed else ""))
    left.legend(fontsize=8, loc="lower left")
    for quantile, style in (("p50", "o-"), ("p99", "^-")):
        right.plot(rtt_ms, [p["latency_s"][quantile] for p in points], style, label=quantile)
    right.set_xlabel("service round trip (ms)")
    right.set_ylabel("seconds, creation to PFX on device")
    right.set_ylim(bottom=0)
    right.set_title("latency at half load")
    right.legend(fontsize=8)
    layout = "leader isolated" if result.get("layout") == "isolated" else "shared CPUs"
    fig.suptitle(
        f"{result['key']}, {result['connectors']} connectors, {layout}; "
        f"load {result.get('loadavg_1m_at_end')}",
        fontsize=10,
    )
    return _saved(fig, path)


def ratio_runs_plot(summary: dict[str, Any], path: Path) -> Path:
    """Several flow runs (:func:`chaos.bench.runs.summarize_runs`): each run's ``ratio``
    against its ``ratio_own_keys`` (bars: ``ratio_sd``; a dashed line at the mean
    ``ratio_same_keys`` when known), and the luck's histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, target = summary["points"], summary["target"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    own = [p["ratio_own_keys"] for p in points]
    ratio = [p["ratio"] for p in points]
    known = [p for p in points if p["ratio_sd"] is not None]
    if known:
        left.errorbar(
            [p["ratio_own_keys"] for p in known],
            [p["ratio"] for p in known],
            yerr=[p["ratio_sd"] for p in known],
            fmt="none",
            ecolor="lightgrey",
            zorder=1,
        )
    hit = [r >= target for r in ratio]
    left.scatter(own, ratio, c=["tab:green" if h else "tab:red" for h in hit], s=18, zorder=2)
    low = min(min(own), min(ratio)) - 0.02
    high = max(max(own), max(ratio)) + 0.02
    left.plot([low, high], [low, high], ":", color="grey", label="no luck either way")
    left.axhline(target, color="black", linewidth=0.8, label=f"target {target:.0%}")
    same = summary.get("ratio_same_keys")
    if same is not None:
        # Where the runs' ratio sits on average: each run's ratio without its keys' luck.
        left.axhline(
            same["mean"],
            color="tab:purple",
            linestyle="--",
            linewidth=0.8,
            label=f"without the keys' luck: mean {same['mean']:.1%}",
        )
    left.set_xlabel("ratio_own_keys (against the leader's own keys)")
    left.set_ylabel("ratio (against the keygen windows)")
    left.set_title(
        f"{summary['ratio']['at_or_above_target']} of {summary['runs']} runs at or above "
        f"{target:.0%}",
        fontsize=10,
    )
    left.legend(fontsize=8, loc="upper left")
    luck = [o / r for o, r in zip(own, ratio, strict=True)]
    bins = max(5, min(20, len(luck) // 2))
    _, edges, _ = right.hist(luck, bins=bins, color="tab:blue", alpha=0.7, label="runs")
    right.axvline(1.0, color="grey", linestyle=":")
    stats = summary["luck"]
    if stats.get("predicted_sd"):
        # What the key times alone predict: a normal curve around 1, scaled to the bins.
        curve = NormalDist(1.0, stats["predicted_sd"])
        width = float(edges[1] - edges[0])
        lo, hi = (
            min(float(edges[0]), 1 - 3 * curve.stdev),
            max(float(edges[-1]), 1 + 3 * curve.stdev),
        )
        xs = [lo + (hi - lo) * i / 200 for i in range(201)]
        right.plot(
            xs,
            [len(luck) * width * curve.pdf(x) for x in xs],
            color="tab:orange",
            label="key times alone",
        )
        right.legend(fontsize=8)
    sd_text = f"sd {stats['sd']:.3f}"
    if stats.get("predicted_sd"):
        sd_text += f" (key times predict {stats['predicted_sd']:.3f})"
    right.set_title(f"luck: mean {stats['mean']:.3f}, {sd_text}", fontsize=10)
    right.set_xlabel("the leader's keys' cost over the windows' (ratio_own_keys / ratio)")
    right.set_ylabel("runs")
    fig.suptitle(
        f"{summary['runs']} flow runs; single runs expected at or above {target:.0%}: "
        f"{summary['share_at_target']:.0%}",
        fontsize=10,
    )
    return _saved(fig, path)
