"""What ``pfxha bench flow`` prints, from its JSON alone."""

from __future__ import annotations

from typing import Any

from chaos.bench._flow_report import summary_lines, sweep_lines


def _result(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "key": "rsa2048",
        "delivered": 300,
        "requested": 300,
        "throughput_per_s": 21.56,
        "keygen_per_s": 24.14,
        "cores": 1,
        "isolated": {"connector_cpus": [0], "other_cpus": [1]},
        "ratio": 0.8931,
        "ratio_sd": 0.0412,
        "ratio_range": [0.87, 0.939],
        "ratio_own_keys": 0.8974,
        "ratio_same_keys": 0.9104,
        "half_load": {"rate_per_s": 12.07, "latency_s": {"p50": 0.0756, "p99": 0.19}},
        "saturation": {
            "keygen_ms": 41.4,
            "cpu_ms_per_request": {"connector_leader": 46.1, "service": 4.2},
            "leader_keygen_ms": 42.0,
            "leader_beyond_keygen_ms": 3.9,
            "leader_cpu_ms": {"key": 42.0, "ca": 1.1},
        },
        "wan": None,
        "lan": None,
    }
    result.update(overrides)
    return result


def test_the_ratio_comes_with_its_noise_and_its_low_noise_twin() -> None:
    first = summary_lines(_result())[0]
    assert "ratio 89.3% ± 4.1% by key luck alone" in first
    assert "(keygen windows: 87.0%..93.9%)" in first
    assert "89.7% against the leader's own keys" in first
    assert "91.0% without the keys' luck" in first


def test_results_from_before_the_luck_free_ratio_print_without_it() -> None:
    first = summary_lines(_result(ratio_same_keys=None))[0]
    assert "89.7% against the leader's own keys; at half load" in first
    assert "without the keys' luck" not in first


def test_an_unknown_noise_is_left_out_not_printed_as_zero() -> None:
    first = summary_lines(_result(ratio_sd=None))[0]
    assert "ratio 89.3% (keygen windows" in first
    assert "±" not in first


def test_where_the_leader_cpu_went_follows() -> None:
    lines = summary_lines(_result())
    assert lines[1].startswith("CPU ms per request (a key costs 41.4 ms of one core)")
    assert "beyond its keys it spent 3.9 ms per request" in lines[2]
    assert lines[3] == "the leader's CPU ms per request: key 42.0, ca 1.1"
    assert len(lines) == 4  # no WAN, no LAN: no line for them


def test_a_sweep_marks_the_points_where_the_leader_changed() -> None:
    point = {
        "rtt_s": 0.08,
        "delivered": 150,
        "requested": 150,
        "throughput_per_s": 20.0,
        "keygen_per_s": 24.0,
        "ratio": 0.833,
        "ratio_own_keys": 0.85,
        "latency_s": {"p50": 0.29, "p99": 0.46},
        "leader_kept": False,
    }
    sweep = {"sweep": [point], "proxy_hop_ms": 0.48, "loadavg_1m_at_end": 1.2}
    lines = sweep_lines(sweep)
    assert lines[0].startswith("round trip 0.08 s: delivered 150/150")
    assert lines[0].endswith("(the leader changed: not comparable)")
    assert lines[1] == "the proxy hop adds 0.48; load 1.2"
