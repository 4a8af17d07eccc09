"""``pfxha bench flow`` end to end on a small load: the JSON contract, not the speed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.bench.flow import command


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the isolated layout needs two CPUs")
def test_flow_bench_delivers_everything_and_writes_the_agreed_json(tmp_path: Path) -> None:
    # No layout flag: with two CPUs the default is the isolated one (the RTT sweep
    # below runs the shared one: one lab less in make test).
    out = tmp_path / "flow.json"
    plot = tmp_path / "flow.png"
    result = CliRunner().invoke(
        command,
        [
            "--connectors=2",
            "--devices=12",
            "--rounds=1",
            "--key=p256",
            "--keygen-seconds=0.3",
            "--paced-seconds=1",
            f"--json={out}",
            f"--plot={plot}",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    body = json.loads(out.read_text())
    assert body["requested"] == body["delivered"] == 12
    assert body["saturation"]["failures"] == []
    assert body["half_load"]["delivered"] == body["half_load"]["requested"]
    for key in ("throughput_per_s", "keygen_per_s", "ratio"):
        assert isinstance(body[key], float)
        assert body[key] > 0
    assert set(body["latency_s"]) >= {"p50", "p99"}
    low, high = body["ratio_range"]
    assert low <= body["ratio"] <= high
    # How far key luck alone moves the ratio, from the spread of the windows' key
    # times (0.3 s windows of P-256 keys: hundreds of keys, never all equal).
    assert body["keygen_keys"] >= 3
    assert body["keygen_time_cv"] > 0
    assert body["keygen_key_cpu_ms"] > 0
    luck = body["keygen_time_cv"] * math.sqrt(
        1 / body["saturation"]["leader_keys"] + 1 / body["keygen_keys"]
    )
    ratio = body["throughput_per_s"] / body["keygen_per_s"]  # "ratio" is rounded to 4 places
    assert body["ratio_sd"] == pytest.approx(ratio * luck, rel=0.02)
    # Isolated: the leader had its own CPUs, keygen ran on those only.
    assert body["layout"] == "isolated"
    assert body["isolated"]["connector_cpus"]
    assert not set(body["isolated"]["connector_cpus"]) & set(body["isolated"]["other_cpus"])
    assert body["cores"] == len(body["isolated"]["connector_cpus"])
    # Every part of the lab is accounted for, and the leader did real work.
    cpu = body["saturation"]["cpu_ms_per_request"]
    assert set(cpu) == {
        "connector_leader",
        "connectors_standby",
        "service",
        "cfssl",
        "zookeeper",
        "bench_and_devices",
    }
    assert cpu["connector_leader"] > 0
    # With no key pool the leader made at least one key per request inside the rounds
    # (a CA call given up on under load is retried with a new key: more, never fewer),
    # and its own metrics say what they cost it.
    assert body["saturation"]["leader_keys"] >= 12
    assert body["saturation"]["leader_keygen_ms"] > 0
    assert "leader_beyond_keygen_ms" in body["saturation"]
    # Where the leader's CPU went: every issuing stage, and the rest of the process.
    breakdown = body["saturation"]["leader_cpu_ms"]
    assert {"key", "csr", "intent", "ca", "pfx", "seal", "upload", "other"} <= set(breakdown)
    assert "outside_issuing" in breakdown
    assert breakdown["key"] > 0
    assert breakdown["ca"] > 0
    # Against the leader's own keys: it cannot beat the keys it had to make.
    assert body["ratio_own_keys"] is not None
    assert 0 <= body["ratio_own_keys"] <= 1.0
    # And the ratio without the keys' luck, whenever both sides' key costs are known
    # (P-256 keys cost hundredths of a millisecond: the rounded costs cannot check it).
    assert isinstance(body["ratio_same_keys"], float)
    assert body["ratio_same_keys"] > 0
    assert body["keypool_per_connector"] == 0
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_rtt_sweep_runs_every_round_trip_in_one_lab_and_plots_it(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    plot = tmp_path / "sweep.png"
    result = CliRunner().invoke(
        command,
        [
            "--connectors=2",
            "--devices=6",
            "--key=p256",
            "--keygen-seconds=0.2",
            "--paced-seconds=0.5",
            "--sweep-rtt=0,0.04",
            "--shared",
            f"--json={out}",
            f"--plot={plot}",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    body = json.loads(out.read_text())
    assert [p["rtt_s"] for p in body["sweep"]] == [0.0, 0.04]
    # Shared: every CPU for everyone, keygen on all of them.
    assert body["layout"] == "shared"
    assert body["cores"] == len(os.sched_getaffinity(0))
    for point in body["sweep"]:
        assert point["delivered"] == point["requested"] == 6
        assert point["failures"] == []
        assert point["half_load"]["delivered"] == point["half_load"]["requested"]
        assert point["throughput_per_s"] > 0
        assert point["ratio"] > 0
        assert isinstance(point["leader_kept"], bool)
        assert set(point["latency_s"]) >= {"p50", "p99"}
    # The link's latency shows: a request's calls cross it at least three times
    # (poll answer, intent, upload), so no request of the far point beats 0.06 s.
    assert body["sweep"][1]["latency_s"]["min"] >= 0.06
    # What the proxy hop itself costs is reported, never hidden in the figures.
    assert body["proxy_hop_ms"]["proxied"] > 0
    assert body["proxy_cpu_ms_per_request"] is not None
    assert len(body["keygen_windows_per_s"]) == 3
    assert plot.read_bytes().startswith(b"\x89PNG")
