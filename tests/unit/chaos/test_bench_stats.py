"""Percentile helpers shared by the benchmarks."""

from __future__ import annotations

import math
import statistics

import pytest

from chaos.bench._stats import KeyTimes, percentile, ratio_same_keys, ratio_sd, summarize


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


def test_key_times_give_the_sample_spread() -> None:
    samples = [0.031, 0.052, 0.040, 0.087, 0.029]
    times = KeyTimes()
    for seconds in samples:
        times = times.add(seconds)
    assert times.n == 5
    assert times.mean == pytest.approx(statistics.mean(samples))
    assert times.cv == pytest.approx(statistics.stdev(samples) / statistics.mean(samples))


def test_key_times_merge_as_one_sample() -> None:
    first = KeyTimes().add(0.031).add(0.052)
    second = KeyTimes().add(0.040).add(0.087).add(0.029)
    merged = KeyTimes.merge([first, second, KeyTimes()])
    whole = [0.031, 0.052, 0.040, 0.087, 0.029]
    assert merged.n == 5
    assert merged.cv == pytest.approx(statistics.stdev(whole) / statistics.mean(whole))


def test_key_times_without_spread_say_so() -> None:
    assert math.isnan(KeyTimes().cv)
    assert math.isnan(KeyTimes().add(0.04).cv)
    assert math.isnan(KeyTimes().mean)


def test_ratio_sd_adds_both_samples_in_quadrature() -> None:
    # 300 leader keys and 600 window keys at a spread of 0.6: 0.6 * sqrt(1/300 + 1/600)
    assert ratio_sd(0.9, 0.6, leader_keys=300, window_keys=600) == pytest.approx(
        0.9 * 0.6 * 0.0707, rel=1e-3
    )
    # Four times the keys on both sides halve it.
    quarter = ratio_sd(0.9, 0.6, leader_keys=1200, window_keys=2400)
    assert quarter == pytest.approx(ratio_sd(0.9, 0.6, leader_keys=300, window_keys=600) / 2)


def test_ratio_sd_is_unknown_without_keys_or_spread() -> None:
    assert math.isnan(ratio_sd(0.9, 0.6, leader_keys=0, window_keys=600))
    assert math.isnan(ratio_sd(0.9, math.nan, leader_keys=300, window_keys=600))


def test_the_ratio_without_luck_charges_the_leader_for_its_own_keys_only() -> None:
    # Costly keys in the rounds made the ratio read low: 42 ms against the windows' 40.
    assert ratio_same_keys(0.88, leader_key_cpu_ms=42.0, window_key_cpu_ms=40.0) == (
        pytest.approx(0.924)
    )
    # Cheap ones made it read high.
    assert ratio_same_keys(0.95, leader_key_cpu_ms=38.0, window_key_cpu_ms=40.0) == (
        pytest.approx(0.9025)
    )
    # Keys that cost the same leave the ratio as it was.
    assert ratio_same_keys(0.91, leader_key_cpu_ms=40.0, window_key_cpu_ms=40.0) == (
        pytest.approx(0.91)
    )


def test_the_ratio_without_luck_is_unknown_without_both_key_costs() -> None:
    assert math.isnan(ratio_same_keys(0.9, leader_key_cpu_ms=0.0, window_key_cpu_ms=40.0))
    assert math.isnan(ratio_same_keys(0.9, leader_key_cpu_ms=40.0, window_key_cpu_ms=math.nan))
