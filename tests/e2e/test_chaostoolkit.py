"""`chaos run` executes a pfxha experiment against a real lab, with rollbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHAOS = Path(sys.executable).with_name("chaos")
_PFXHA = [sys.executable, "-c", "from connector.cli import main; main()"]

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHAOS.exists(), reason="chaostoolkit is not installed"),
]


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    run_dir = tmp_path / "lab"
    up = subprocess.run(
        [*_PFXHA, "lab", "up", "--dir", str(run_dir)], capture_output=True, text=True, timeout=200
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield run_dir
    finally:
        subprocess.run([*_PFXHA, "lab", "down", "--dir", str(run_dir)], timeout=120)


def test_connector_down_experiment_holds_its_steady_state(lab_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    result = subprocess.run(
        [
            str(CHAOS), "--no-version-check", "--log-file", str(tmp_path / "chaostoolkit.log"),
            "run", "--journal-path", str(journal),
            str(REPO / "chaos" / "experiments" / "connector-down.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=dict(os.environ, PFXHA_LAB_DIR=str(lab_dir)),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads(journal.read_text())
    assert run["status"] == "completed"
    assert run["deviated"] is False
    by_name = {r["activity"]["name"]: r for r in run["run"]}
    killed = by_name["kill-the-active-connector"]["output"]
    assert killed["ok"] is True
    assert by_name["a-new-device-still-gets-its-certificate-within-5s"]["status"] == "succeeded"
    assert run["rollbacks"][0]["output"]["restarted"] == [killed["name"]]


@pytest.mark.parametrize("name", ["connector-down", "ca-down", "both-down"])
def test_experiments_are_valid(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CHAOS), "--no-version-check", "--no-log-file", "validate",
         str(REPO / "chaos" / "experiments" / f"{name}.json")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
