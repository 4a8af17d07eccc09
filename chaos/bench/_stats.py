"""Percentile summaries for benchmark JSON, the same shape in every benchmark.

    summarize([0.012, 0.019, 0.016])
    # {"n": 3, "p50": 0.016, "p90": ..., "p99": ..., "max": 0.019, "min": 0.012, "mean": ...}

Percentiles use linear interpolation between closest ranks (numpy's default), so
p99 of 20 samples sits between the two largest rather than being the maximum.

A throughput against raw key generation is noisy because key generation time is
random (an RSA key's prime search takes as long as it takes): the spread of the
keys' times says how far one run's ratio can move by luck alone.

    times = KeyTimes().add(0.031).add(0.052)      # or KeyTimes.merge([a, b])
    times.n, times.mean, times.cv                 # 2, 0.0415, 0.358
    ratio_sd(0.91, times.cv, leader_keys=300, window_keys=570)   # about 0.91 * cv * 0.071

The luck can also be taken out: set the throughput against what the leader's own
keys would have cost the keygen windows (same thread CPU per key, the windows'
wall time per CPU second), which leaves the connector's own overhead::

    ratio_same_keys(0.88, leader_key_cpu_ms=42.0, window_key_cpu_ms=40.0)   # 0.924
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["KeyTimes", "percentile", "ratio_same_keys", "ratio_sd", "summarize", "write_result"]


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


@dataclass(frozen=True)
class KeyTimes:
    """Running sums of key generation times (seconds): count, mean, spread."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, seconds: float) -> KeyTimes:
        return KeyTimes(self.n + 1, self.total + seconds, self.total_sq + seconds * seconds)

    @staticmethod
    def merge(parts: Iterable[KeyTimes]) -> KeyTimes:
        n, total, total_sq = 0, 0.0, 0.0
        for part in parts:
            n, total, total_sq = n + part.n, total + part.total, total_sq + part.total_sq
        return KeyTimes(n, total, total_sq)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def cv(self) -> float:
        """Sample standard deviation over the mean (NaN below two keys)."""
        if self.n < 2 or self.total <= 0:
            return math.nan
        variance = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        return math.sqrt(max(0.0, variance)) / self.mean


def ratio_sd(ratio: float, key_time_cv: float, *, leader_keys: int, window_keys: int) -> float:
    """One standard deviation of ``ratio`` from the random key times alone.

    ``ratio`` is the leader's throughput over raw keygen: each side rests on the
    mean time of its own random keys (``leader_keys`` keys made in the rounds,
    ``window_keys`` in the keygen windows), so its relative error is the keys'
    coefficient of variation over the root of each count, added in quadrature.
    What the machine's own drift adds is not in it. NaN when a count is zero.
    """
    if leader_keys <= 0 or window_keys <= 0 or math.isnan(key_time_cv):
        return math.nan
    return ratio * key_time_cv * math.sqrt(1 / leader_keys + 1 / window_keys)


def ratio_same_keys(ratio: float, *, leader_key_cpu_ms: float, window_key_cpu_ms: float) -> float:
    """``ratio`` as if the keygen windows had drawn keys as costly as the leader's.

    ``ratio`` sets the leader's throughput against the windows' keys; both sides
    draw random keys from one distribution (the same call on the same CPUs), so
    a run whose leader drew costly keys reads low and one that drew cheap keys
    reads high, by about ``ratio_sd``. Scaled by what a key cost the leader's
    thread over what it cost the windows' (thread CPU both), the keys' luck
    cancels and what is left is the connector's own overhead, at the windows'
    wall time per CPU second (what else the connector's CPUs run while idle).
    Its expectation is ``ratio``'s as long as both sides' keys cost the same on
    average; its spread is a small fraction of ``ratio_sd``. NaN when either
    cost is unknown.
    """
    if not (leader_key_cpu_ms > 0 and window_key_cpu_ms > 0):
        return math.nan
    return ratio * leader_key_cpu_ms / window_key_cpu_ms
