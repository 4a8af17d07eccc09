"""report.md and timeline.png from a synthetic drill."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.drill.report import fault_windows, plot_timeline, render_report, write_report
from chaos.drill.result import (
    RoundResult,
    ScenarioResult,
    load_rounds,
    percentile,
    write_contract,
    write_rounds,
)
from chaos.history import History


def _scenarios() -> list[ScenarioResult]:
    clean = ScenarioResult(
        "connector-down",
        rounds=[
            RoundResult("connector-down", i, fault_at=float(i), failover_s=0.1 * i)
            for i in range(1, 21)
        ],
        created=40,
        delivered=40,
    )
    broken = ScenarioResult(
        "ca-down",
        rounds=[
            RoundResult("ca-down", 1, 30.0, failover_s=0.2, violations=["lost request r7"]),
        ],
        created=3,
        delivered=2,
        lost=1,
    )
    return [clean, broken]


def _history() -> History:
    history = History()
    history.info("observer", "leader", {"name": "c1", "epoch": 1})
    history.info("nemesis", "fault", {"scenario": "connector-down", "round": 1, "phase": "start"})
    history.info("observer", "leader", {"name": None, "epoch": None})
    history.info("observer", "leader", {"name": "c2", "epoch": 2})
    history.info("nemesis", "fault", {"scenario": "connector-down", "round": 1, "phase": "heal"})
    history.info(
        "observer", "delivery", {"request": "r1", "issuer": "primary", "epoch": 2, "latency": 0.3}
    )
    history.info("nemesis", "fault", {"scenario": "ca-down", "round": 1, "phase": "start"})
    return history


def test_percentile_is_nearest_rank() -> None:
    values = [0.1 * i for i in range(1, 21)]
    assert percentile(values, 50) == values[9]
    assert percentile(values, 99) == values[-1]
    assert percentile([], 99) == 0.0


def test_contract_has_the_documented_shape_and_verdict(tmp_path: Path) -> None:
    data = write_contract(_scenarios(), tmp_path / "result.json")
    assert json.loads((tmp_path / "result.json").read_text()) == data
    assert data["ok"] is False
    assert set(data) == {"scenarios", "certificates", "ok", "topology", "ca"}
    assert data["ca"] == "cfssl"
    assert data["topology"] == "single-host"
    assert data["certificates"] == {
        "device": {"delivered": 0},
        "user": {"delivered": 0, "users": 0, "devices": 0, "rollovers": 0},
    }
    exercised = {"device": {"delivered": 5}, "user": {"delivered": 2, "users": 2,
                 "devices": 3, "rollovers": 1}}  # fmt: skip
    written = write_contract(_scenarios(), tmp_path / "c.json", certificates=exercised)
    assert written["certificates"] == exercised
    down = data["scenarios"]["connector-down"]
    assert set(down) == {
        "rounds",
        "failover_s",
        "violations",
        "requests",
        "duplicates",
        "stale_epoch_rejected",
        "leader_changes",  # added with the gray-failure scenarios (issue 13)
    }
    assert down["rounds"] == 20
    assert down["failover_s"] == {"p50": 1.0, "p99": 2.0, "max": 2.0}
    assert down["requests"] == {"created": 40, "delivered": 40, "failed": 0, "lost": 0}
    assert data["scenarios"]["ca-down"]["violations"] == ["round 1: lost request r7"]
    assert write_contract(_scenarios()[:1], tmp_path / "ok.json")["ok"] is True


def test_rounds_round_trip(tmp_path: Path) -> None:
    write_rounds(_scenarios(), tmp_path / "rounds.json")
    loaded = load_rounds(tmp_path / "rounds.json")
    assert loaded["ca-down"][0].violations == ["lost request r7"]
    assert len(loaded["connector-down"]) == 20


def test_report_lists_scenarios_rounds_and_violations(tmp_path: Path) -> None:
    text = render_report(_scenarios(), command="pfxha drill --scenario all")
    assert "VIOLATIONS FOUND" in text
    assert "pfxha drill --scenario all" in text
    assert "| connector-down | 20 | 1.000 | 2.000 | 2.000 |" in text
    assert "- round 1: lost request r7" in text
    write_report(_scenarios()[:1], tmp_path / "report.md")
    assert "Verdict: **OK**" in (tmp_path / "report.md").read_text()


def test_report_tables_the_late_certificates_of_a_stalled_ca() -> None:
    stalled = RoundResult("ca-stall", 1, fault_at=1.0, keys_in_doubt=6, late_certificates=4)
    stalled.late_revoked = 4
    text = render_report([ScenarioResult("ca-stall", rounds=[stalled])], command="pfxha drill")
    assert "| round | keys in doubt | late certificates | revoked |" in text
    assert "| 1 | 6 | 4 | 4 |" in text
    assert "keys in doubt" not in render_report(_scenarios(), command="pfxha drill")


def test_a_scenario_where_no_round_recovered_shows_no_failover_time() -> None:
    lost = RoundResult("ca-node-stall", 1, fault_at=1.0, violations=["no recovery within 20s"])
    result = ScenarioResult("ca-node-stall", rounds=[lost])
    assert result.failover_cells() == ("-", "-", "-")
    assert "| ca-node-stall | 1 | - | - | - |" in render_report([result], command="pfxha drill")
    timed = ScenarioResult("x", rounds=[RoundResult("x", 1, fault_at=1.0, failover_s=0.25)])
    assert timed.failover_cells() == ("0.250", "0.250", "0.250")


def test_fault_windows_and_timeline_png(tmp_path: Path) -> None:
    history = _history()
    windows = fault_windows(history.events)
    assert [(w.scenario, w.round) for w in windows] == [("connector-down", 1), ("ca-down", 1)]
    assert windows[0].end > windows[0].start
    out = tmp_path / "timeline.png"
    plot_timeline(history.events, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
