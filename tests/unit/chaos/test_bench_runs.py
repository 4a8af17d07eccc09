"""``pfxha bench runs``: several flow results side by side (no servers)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.bench._plot import ratio_runs_plot
from chaos.bench.runs import command, summarize_runs


def _result(ratio: float, own: float, sd: float | None = 0.04) -> dict[str, object]:
    return {"ratio": ratio, "ratio_own_keys": own, "ratio_sd": sd}


RUNS = [_result(0.85, 0.90), _result(0.93, 0.90), _result(0.88, 0.91), _result(0.91, 0.90, None)]


def test_the_runs_ratios_and_how_many_reach_the_target() -> None:
    summary = summarize_runs(RUNS, target=0.9)
    assert summary["runs"] == 4
    assert summary["ratio"]["at_or_above_target"] == 2
    assert summary["ratio_own_keys"]["at_or_above_target"] == 4
    assert summary["ratio"]["median"] == pytest.approx(0.895)
    assert summary["ratio"]["sd"] == pytest.approx(
        statistics.stdev([0.85, 0.93, 0.88, 0.91]), abs=1e-4
    )


def test_luck_is_the_leaders_keys_over_the_windows_and_its_prediction_the_runs_own() -> None:
    summary = summarize_runs(RUNS, target=0.9)
    luck = [0.90 / 0.85, 0.90 / 0.93, 0.91 / 0.88, 0.90 / 0.91]
    assert summary["luck"]["mean"] == pytest.approx(statistics.fmean(luck), abs=1e-4)
    # Only the runs that carry ratio_sd predict: 0.04 over each one's ratio.
    assert summary["luck"]["predicted_sd"] == pytest.approx(
        statistics.fmean([0.04 / 0.85, 0.04 / 0.93, 0.04 / 0.88]), abs=1e-4
    )


def test_the_share_expected_at_the_target_follows_the_runs_spread() -> None:
    centred = summarize_runs([_result(0.88, 0.9), _result(0.92, 0.9)], target=0.9)
    assert centred["share_at_target"] == pytest.approx(0.5)
    above = summarize_runs([_result(0.95, 0.9), _result(0.97, 0.9)], target=0.9)
    assert above["share_at_target"] > 0.99
    level = summarize_runs([_result(0.91, 0.9), _result(0.91, 0.9)], target=0.9)
    assert level["share_at_target"] == 1.0  # no spread at all: every run would pass


def test_without_luck_each_run_is_charged_for_its_own_keys() -> None:
    # One run carries the field; one from before it has only its key costs.
    runs = [
        {**_result(0.86, 0.90), "ratio_same_keys": 0.915},
        {
            **_result(0.95, 0.91),
            "keygen_key_cpu_ms": 40.0,
            "saturation": {"leader_keygen_ms": 38.4},
        },
    ]
    same = summarize_runs(runs, target=0.9)["ratio_same_keys"]
    assert same["min"] == pytest.approx(0.912)  # 0.95 * 38.4 / 40
    assert same["max"] == pytest.approx(0.915)
    assert same["at_or_above_target"] == 2


def test_without_the_key_costs_there_is_no_luck_free_spread() -> None:
    assert summarize_runs(RUNS, target=0.9)["ratio_same_keys"] is None


def test_one_run_has_no_spread() -> None:
    with pytest.raises(ValueError, match="at least two"):
        summarize_runs([_result(0.9, 0.9)], target=0.9)


def test_the_command_prints_writes_and_refuses_what_is_not_a_flow_result(tmp_path: Path) -> None:
    paths = []
    for index, run in enumerate(RUNS):
        path = tmp_path / f"flow-{index}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    out = tmp_path / "runs.json"
    result = CliRunner().invoke(command, [*paths, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 runs: ratio mean" in result.output
    assert "2 at or above 90%" in result.output
    assert json.loads(out.read_text())["runs"] == 4

    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"sweep": [{"ratio": 0.9}]}))
    refused = CliRunner().invoke(command, [paths[0], str(sweep)])
    assert refused.exit_code == 2
    assert "not a single `pfxha bench flow` result" in refused.output

    alone = CliRunner().invoke(command, [paths[0]])
    assert alone.exit_code == 2
    assert "at least two" in alone.output


def test_the_plot_draws_runs_with_and_without_their_key_costs(tmp_path: Path) -> None:
    runs = [
        {**_result(0.86, 0.90), "ratio_same_keys": 0.915},
        {**_result(0.95, 0.91), "ratio_same_keys": 0.912},
    ]
    for name, results in (("with.png", runs), ("without.png", RUNS)):
        summary = summarize_runs(results, target=0.9)
        written = ratio_runs_plot(summary, tmp_path / name)
        assert written.read_bytes().startswith(b"\x89PNG")
