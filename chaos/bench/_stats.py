"""Percentile summaries for benchmark JSON, the same shape in every benchmark.

    summarize([0.012, 0.019, 0.016])
    # {"n": 3, "p50": 0.016, "p90": ..., "p99": ..., "max": 0.019, "min": 0.012, "mean": ...}

Percentiles use linear interpolation between closest ranks (numpy's default), so
p99 of 20 samples sits between the two largest rather than being the maximum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["percentile", "summarize", "write_result"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``; NaN when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float], digits: int = 4) -> dict[str, float | int | None]:
    """``n``, ``p50``, ``p90``, ``p99``, ``max``, ``min``, ``mean``; None values when empty."""
    if not samples:
        return {
            "n": 0,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
            "min": None,
            "mean": None,
        }
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 50), digits),
        "p90": round(percentile(samples, 90), digits),
        "p99": round(percentile(samples, 99), digits),
        "max": round(max(samples), digits),
        "min": round(min(samples), digits),
        "mean": round(sum(samples) / len(samples), digits),
    }


def write_result(path: Path, result: Mapping[str, Any]) -> Path:
    """Write a benchmark's JSON (indented, newline-terminated), making the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
