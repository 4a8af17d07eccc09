"""Percentile helpers shared by the benchmarks."""

from __future__ import annotations

import math

import pytest

from chaos.bench._stats import percentile, summarize


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [0.4, 0.1, 0.3, 0.2]
    assert percentile(samples, 0) == 0.1
    assert percentile(samples, 100) == 0.4
    assert percentile(samples, 50) == pytest.approx(0.25)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile(samples, 101)


def test_summary_shape() -> None:
    summary = summarize([float(i) for i in range(1, 101)])
    assert summary["n"] == 100
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["max"] == 100.0
    assert summarize([])["p99"] is None
