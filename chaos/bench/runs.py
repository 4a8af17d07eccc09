"""``pfxha bench runs``: several ``pfxha bench flow`` results side by side, and their luck.

    pfxha bench flow --json runs/flow-1.json      # ... as many times as there is time for
    pfxha bench runs runs/flow-*.json --target 0.9 --plot runs/flow-runs.png --json F

One flow run's ``ratio`` (throughput against the keygen windows) moves by the
luck of its random keys: the leader's keys in the rounds and the windows' keys
are two samples of RSA key generation, whose time varies by about 60 % from key
to key. ``ratio_own_keys`` sets the throughput against the leader's own keys
and carries far less of it. Their quotient, the *luck*, is what the leader's
keys cost over what the windows' did (``leader_keygen_ms / keygen_ms``).

For the runs given this prints and writes:

- ``ratio`` and ``ratio_own_keys``: mean, median, standard deviation, range,
  and how many runs reached ``--target``;
- ``luck``: its mean (1.0 when neither side is favoured) and standard
  deviation, beside the one each run predicted from its own key times
  (``ratio_sd / ratio``, when the results have it);
- ``ratio_same_keys``: each run's ``ratio`` with the luck taken out (its own
  field, or from its key costs for results written before it existed), whose
  mean is the best estimate of what ``ratio`` is on average; None when a
  result lacks the key costs;
- ``share_at_target``: the share of single runs expected at or above the
  target, from a normal distribution with the runs' mean and spread.

The plot shows each run (``ratio`` against ``ratio_own_keys``, with its
``ratio_sd`` where known) and the luck's histogram.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from chaos.bench._plot import ratio_runs_plot
from chaos.bench._stats import ratio_same_keys, write_result

__all__ = ["command", "summarize_runs"]


def _spread(values: Sequence[float], target: float | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "mean": round(statistics.fmean(values), 4),
        "median": round(statistics.median(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }
    if target is not None:
        summary["at_or_above_target"] = sum(1 for v in values if v >= target)
    return summary


def summarize_runs(results: Sequence[Mapping[str, Any]], target: float) -> dict[str, Any]:
    """The runs' ratios, their luck, and the share of single runs expected at ``target``.

    Every result must be a single flow run (``ratio`` and ``ratio_own_keys`` set);
    at least two are needed for a spread.
    """
    if len(results) < 2:
        raise ValueError(f"need at least two flow results, got {len(results)}")
    ratios = [float(r["ratio"]) for r in results]
    own = [float(r["ratio_own_keys"]) for r in results]
    luck = [o / r for o, r in zip(own, ratios, strict=True)]
    predicted = [
        float(r["ratio_sd"]) / float(r["ratio"]) for r in results if r.get("ratio_sd") is not None
    ]
    # Known for every run or not shown: a mean over some runs would mislead.
    same_keys = [x for x in map(_same_keys, results) if x is not None]
    ratio = _spread(ratios, target)
    mean, sd = statistics.fmean(ratios), statistics.stdev(ratios)
    share = 1 - statistics.NormalDist(mean, sd).cdf(target) if sd > 0 else float(mean >= target)
    return {
        "runs": len(results),
        "target": target,
        "ratio": ratio,
        "ratio_own_keys": _spread(own, target),
        "luck": {
            **_spread(luck),
            "predicted_sd": round(statistics.fmean(predicted), 4) if predicted else None,
        },
        "ratio_same_keys": _spread(same_keys, target) if len(same_keys) == len(results) else None,
        "share_at_target": round(share, 3),
        "points": [
            {"ratio": r, "ratio_own_keys": o, "ratio_sd": res.get("ratio_sd")}
            for r, o, res in zip(ratios, own, results, strict=True)
        ],
    }


def _same_keys(result: Mapping[str, Any]) -> float | None:
    """The run's ``ratio_same_keys``, or the same from its key costs (older results)."""
    if result.get("ratio_same_keys") is not None:
        return float(result["ratio_same_keys"])
    leader = (result.get("saturation") or {}).get("leader_keygen_ms")
    window = result.get("keygen_key_cpu_ms")
    if leader is None or window is None:
        return None
    value = ratio_same_keys(
        float(result["ratio"]), leader_key_cpu_ms=float(leader), window_key_cpu_ms=float(window)
    )
    return None if math.isnan(value) else round(value, 4)


def _load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    results = []
    for path in paths:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="RESULTS") from exc
        if (
            not isinstance(body, dict)
            or body.get("ratio") is None
            or not body.get("ratio_own_keys")
        ):
            raise click.BadParameter(
                f"{path}: not a single `pfxha bench flow` result (no ratio and "
                "ratio_own_keys; a --sweep-rtt result holds several)",
                param_hint="RESULTS",
            )
        results.append(body)
    return results


@click.command("runs")
@click.argument("paths", metavar="RESULTS...", nargs=-1, required=True, type=Path)
@click.option("--target", default=0.9, show_default=True, help="The ratio a run should reach.")
@click.option("--json", "json_path", type=Path, help="Write the summary here.")
@click.option("--plot", "plot_path", type=Path, help="Each run, and the luck's histogram (PNG).")
def command(
    paths: tuple[Path, ...], target: float, json_path: Path | None, plot_path: Path | None
) -> None:
    """Several `pfxha bench flow --json` results side by side: how many reach the target,
    and how much of their spread is the random keys' luck."""
    results = _load(paths)
    try:
        summary = summarize_runs(results, target)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    ratio, own, luck = summary["ratio"], summary["ratio_own_keys"], summary["luck"]
    click.echo(
        f"{summary['runs']} runs: ratio mean {ratio['mean']:.1%}, median {ratio['median']:.1%}, "
        f"sd {ratio['sd']:.1%} ({ratio['min']:.1%}..{ratio['max']:.1%}); "
        f"{ratio['at_or_above_target']} at or above {target:.0%}"
    )
    click.echo(
        f"against the leader's own keys: mean {own['mean']:.1%}, sd {own['sd']:.1%} "
        f"({own['min']:.1%}..{own['max']:.1%}); {own['at_or_above_target']} at or above"
    )
    predicted = luck["predicted_sd"]
    click.echo(
        f"luck (the leader's keys over the windows'): mean {luck['mean']:.3f}, sd {luck['sd']:.3f}"
        + (f"; the runs' own key times predicted {predicted:.3f}" if predicted else "")
    )
    same = summary["ratio_same_keys"]
    if same is not None:
        click.echo(
            f"without the keys' luck: mean {same['mean']:.1%}, sd {same['sd']:.1%} "
            f"({same['min']:.1%}..{same['max']:.1%}): what ratio is on average"
        )
    click.echo(f"single runs expected at or above {target:.0%}: {summary['share_at_target']:.0%}")
    if json_path is not None:
        click.echo(f"wrote {write_result(json_path, summary)}")
    if plot_path is not None:
        click.echo(f"wrote {ratio_runs_plot(summary, plot_path)}")
