"""``pfxha bench pki`` end to end, tiny: the JSON has the promised shape."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from chaos.bench.pki import command


def test_bench_pki_writes_rates_ratio_and_burst(tmp_path: Path) -> None:
    out = tmp_path / "pki.json"
    result = CliRunner().invoke(
        command,
        [
            "--key",
            "p256",
            "--seconds",
            "1",
            "--pool-size",
            "4",
            "--threads",
            "1",
            "--run-dir",
            str(tmp_path / "cfssl"),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["key"] == "p256"
    assert data["cores"] >= 1
    assert data["keygen_per_s"] > 0
    assert data["pipeline_per_s"] > 0
    assert abs(data["ratio"] - data["pipeline_per_s"] / data["keygen_per_s"]) < 0.01
    assert data["burst"]["pool_hits"] == 4
    assert data["burst"]["per_s"] > 0
