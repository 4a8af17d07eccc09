"""ConnectorMetrics: names, labels and the small setters the agent calls."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connector.agent.runtime import metered_keygen
from connector.metrics import ConnectorMetrics
from connector.pki import KeyType


def _value(metrics: ConnectorMetrics, sample: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(sample, labels)


def test_role_change_counts_transition_with_reason() -> None:
    m = ConnectorMetrics(name="a", cluster="c")
    m.set_role("leader", reason="elected")
    m.set_role("leader", reason="elected")  # not a change: not counted
    m.set_role("suspended", reason="connection_suspended")

    assert _value(m, "pfxha_connector_role", pfxha_connector_role="suspended") == 1
    assert _value(m, "pfxha_connector_role", pfxha_connector_role="leader") == 0
    assert (
        _value(m, "pfxha_connector_leadership_transitions_total", role="leader", reason="elected")
        == 1
    )
    assert m.current_role == "suspended"


def test_demotion_zeroes_backlog_so_sums_count_only_the_leader() -> None:
    m = ConnectorMetrics()
    m.set_role("leader", reason="elected")
    m.set_pending("issue", 40)
    assert _value(m, "pfxha_connector_pending_requests", kind="issue") == 40
    m.set_role("standby", reason="lost_lease")
    assert _value(m, "pfxha_connector_pending_requests", kind="issue") == 0


def test_kazoo_state_names_are_accepted_and_read_only_counts_as_suspended() -> None:
    m = ConnectorMetrics()
    state = "pfxha_connector_zookeeper_session_state"
    assert _value(m, state, **{state: "connecting"}) == 1
    m.set_session_state("CONNECTED")
    assert _value(m, state, **{state: "connected"}) == 1
    m.set_session_state("CONNECTED_RO")
    assert _value(m, state, **{state: "suspended"}) == 1


def test_fast_path_state_starts_idle_and_follows_the_election() -> None:
    from election import FastPath

    m = ConnectorMetrics()
    state = "pfxha_connector_fast_path_state"
    assert _value(m, state, **{state: "idle"}) == 1
    for value in FastPath:  # the election's states are exactly the metric's
        m.set_fast_path(value.value)
        assert _value(m, state, **{state: value.value}) == 1


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        ("set_role", ("leaderish", "x")),
        ("set_session_state", ("weird",)),
        ("set_fast_path", ("half-armed",)),
        ("set_pending", ("x", 1)),
    ],
)
def test_unknown_words_are_refused(call: str, arg: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="unknown"):
        getattr(ConnectorMetrics(), call)(*arg)


def test_work_metrics_and_timestamps() -> None:
    m = ConnectorMetrics(wall_clock=lambda: 1_700_000_000.0)
    m.request_processed(kind="issue", result="delivered", template="wifi", ca="primary")
    m.observe_issuance(0.3, ca="primary")
    with m.time_revocation(ca="secondary"):
        pass
    m.set_ca_state("primary", up=False, circuit="open")
    m.mark_poll_success()
    m.set_certificate_expiry(
        datetime(2030, 1, 1, tzinfo=UTC), not_before=datetime(2029, 12, 2, tzinfo=UTC)
    )

    assert (
        _value(
            m,
            "pfxha_connector_requests_processed_total",
            kind="issue",
            result="delivered",
            template="wifi",
            ca="primary",
        )
        == 1
    )
    assert _value(m, "pfxha_connector_issuance_duration_seconds_count", ca="primary") == 1
    assert _value(m, "pfxha_connector_revocation_duration_seconds_count", ca="secondary") == 1
    assert _value(m, "pfxha_connector_ca_up", ca="primary") == 0
    circuit = "pfxha_connector_ca_circuit_state"
    assert _value(m, circuit, ca="primary", **{circuit: "open"}) == 1
    assert _value(m, "pfxha_connector_last_successful_poll_timestamp_seconds") == 1_700_000_000.0
    assert (
        _value(m, "pfxha_connector_certificate_expiry_timestamp_seconds")
        == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    )
    assert (
        _value(m, "pfxha_connector_certificate_not_before_timestamp_seconds")
        == datetime(2029, 12, 2, tzinfo=UTC).timestamp()
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        m.set_certificate_expiry(datetime(2030, 1, 1))


def test_exposition_follows_conventions_and_instances_are_independent() -> None:
    a, b = ConnectorMetrics(name="a"), ConnectorMetrics(name="b")  # no duplicate-name error
    a.set_role("leader", reason="elected")
    assert _value(b, "pfxha_connector_role", pfxha_connector_role="leader") == 0

    families = list(text_string_to_metric_families(generate_latest(a.registry).decode()))
    ours = [f for f in families if f.name.startswith("pfxha_")]
    assert {f.name for f in ours} >= {
        "pfxha_connector_role",
        "pfxha_connector_build_info",
        "pfxha_connector_takeover_duration_seconds",
    }
    for family in ours:
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    info = next(f for f in ours if f.name == "pfxha_connector_build_info").samples[0]
    assert info.labels["name"] == "a"


def test_shared_registry_is_used_as_given() -> None:
    registry = CollectorRegistry()
    m = ConnectorMetrics(registry)
    assert m.registry is registry
    # No process collector was added to a registry we did not create.
    assert registry.get_sample_value("process_start_time_seconds") is None


def test_metered_keygen_records_thread_cpu_not_wall_time() -> None:
    m = ConnectorMetrics(name="a", cluster="c")
    marker = object()

    def busy(_kt: KeyType) -> Any:
        spin_until = time.thread_time() + 0.02
        while time.thread_time() < spin_until:
            pass
        return marker

    def idle(_kt: KeyType) -> Any:
        time.sleep(0.05)  # the workload itself: wall time that costs no CPU
        return marker

    assert metered_keygen(m, busy)(KeyType.RSA2048) is marker
    cpu_busy = _value(m, "pfxha_connector_key_generation_cpu_seconds_sum", key_type="rsa2048")
    assert cpu_busy is not None
    assert cpu_busy >= 0.02

    metered_keygen(m, idle)(KeyType.P256)
    cpu_idle = _value(m, "pfxha_connector_key_generation_cpu_seconds_sum", key_type="p256")
    assert cpu_idle is not None
    assert cpu_idle < 0.02
    assert _value(m, "pfxha_connector_key_generation_cpu_seconds_count", key_type="rsa2048") == 1


def test_reconcile_readiness_and_the_explicit_opt_out_are_exported() -> None:
    m = ConnectorMetrics(name="c1", cluster="lab")
    m.set_reconcile_state("primary", ready=False, off=False)
    m.set_reconcile_state("secondary", ready=True, off=True)
    m.set_intents_unreconciled(3)
    assert _value(m, "pfxha_connector_reconcile_ready", ca="primary") == 0
    assert _value(m, "pfxha_connector_reconcile_off", ca="primary") == 0
    assert _value(m, "pfxha_connector_reconcile_off", ca="secondary") == 1
    assert _value(m, "pfxha_connector_intents_unreconciled") == 3


def test_orphans_revoked_by_how_they_were_found_and_late_keys_read_at_scrape() -> None:
    m = ConnectorMetrics(name="c1", cluster="lab")
    m.orphans_revoked_by("reconcile", 2)
    m.orphans_revoked_by("late", 0)
    m.orphans_revoked_by("late", 3)
    assert _value(m, "pfxha_connector_orphans_revoked_total", found="reconcile") == 2
    assert _value(m, "pfxha_connector_orphans_revoked_total", found="late") == 3
    with pytest.raises(ValueError, match="unknown find"):
        m.orphans_revoked_by("guess", 1)
    watched = [4]
    m.watch_late_keys(lambda: watched[0])
    assert _value(m, "pfxha_connector_late_keys_watched") == 4
    watched[0] = 0
    assert _value(m, "pfxha_connector_late_keys_watched") == 0


def test_state_gauges_follow_every_change_with_repeats_in_between() -> None:
    m = ConnectorMetrics(name="a", cluster="c")
    for up, circuit in [(True, "closed"), (True, "closed"), (False, "open"), (True, "closed")]:
        m.set_ca_state("primary", up=up, circuit=circuit)
    m.set_reachable("service", False)
    m.set_reachable("service", True)
    m.set_reconcile_state("primary", ready=False, off=False)
    m.set_reconcile_state("primary", ready=True, off=False)
    m.set_reconcile_state("primary", ready=True, off=False)
    assert _value(m, "pfxha_connector_ca_up", ca="primary") == 1.0
    assert _value(m, "pfxha_connector_reachable", target="service") == 1.0
    assert _value(m, "pfxha_connector_reconcile_ready", ca="primary") == 1.0
    # Another label is a gauge of its own, not a repeat.
    m.set_ca_state("secondary", up=True, circuit="closed")
    assert _value(m, "pfxha_connector_ca_up", ca="secondary") == 1.0


def test_the_certdb_index_gauge_reads_each_ca_at_scrape_time() -> None:
    m = ConnectorMetrics(name="a", cluster="c")
    rows = {"primary": 10, "secondary": 0}
    m.watch_certdb_index(rows.__getitem__, rows)
    rows["primary"] = 12  # a search learnt two more since
    assert _value(m, "pfxha_connector_certdb_indexed_rows", ca="primary") == 12.0
    assert _value(m, "pfxha_connector_certdb_indexed_rows", ca="secondary") == 0.0
