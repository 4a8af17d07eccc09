"""The ZooKeeper exporter's pure parts: the server list, the ``mntr`` parser, the collector.

The collector gets canned replies (a real 3.8.0 capture) through its ``fetch``
hook; tests/integration/monitoring/test_zk_exporter.py runs it against real servers.
"""

from __future__ import annotations

import logging
import threading

import pytest
from prometheus_client import CollectorRegistry

from connector.zk_exporter import (
    STATES,
    MntrReading,
    ZkExporterError,
    ZooKeeperCollector,
    parse_mntr,
    parse_servers,
)
from tests.fixtures.zookeeper_mntr import MNTR_LEADER, MNTR_NOT_SERVING, MNTR_REFUSED


def test_parse_servers_takes_a_connect_string() -> None:
    assert parse_servers("zk1:2181, zk2:2182,zk3/pfxha") == [
        ("zk1", 2181),
        ("zk2", 2182),
        ("zk3", 2181),
    ]
    assert parse_servers("[::1]:2181") == [("::1", 2181)]


@pytest.mark.parametrize("bad", ["", ",", "zk1:http", "zk1:0", "zk1:70000", ":2181"])
def test_parse_servers_refuses_what_is_not_host_port(bad: str) -> None:
    with pytest.raises(ZkExporterError):
        parse_servers(bad)


def test_a_leaders_reply_reads_as_its_numbers() -> None:
    reading = parse_mntr(MNTR_LEADER)
    assert reading == MntrReading(
        up=True,
        state="leader",
        outstanding_requests=0,
        latency_count=403 + 601,
        latency_sum_ms=631 + 201,
        max_latency_ms=99,
        alive_connections=1,
    )
    # The capture's own cumulative average agrees with count and sum.
    assert reading.latency_sum_ms is not None
    assert reading.latency_count is not None
    assert round(reading.latency_sum_ms / reading.latency_count, 4) == 0.8287


@pytest.mark.parametrize(
    ("reply", "up", "state", "reason"),
    [
        ("", False, None, "no answer"),
        (MNTR_NOT_SERVING, True, "not_serving", ""),
        (MNTR_REFUSED, False, None, "mntr refused"),
        ("imok", False, None, "not an mntr reply"),
        ("zk_server_state\tconfused\n", False, None, "not an mntr reply"),
    ],
)
def test_replies_without_numbers(reply: str, up: bool, state: str | None, reason: str) -> None:
    reading = parse_mntr(reply)
    assert (reading.up, reading.state) == (up, state)
    assert reading.reason.startswith(reason)
    assert reading.outstanding_requests is None


def test_a_reply_without_the_latency_summaries_exports_no_latency() -> None:
    """Servers before 3.6 have no zk_cnt_/zk_sum_ lines: no half-made summary."""
    old = "\n".join(
        line for line in MNTR_LEADER.splitlines() if not line.startswith("zk_cnt_readlatency")
    )
    reading = parse_mntr(old)
    assert reading.up
    assert reading.latency_count is None
    assert reading.max_latency_ms == 99


def _collector(replies: dict[str, str]) -> tuple[CollectorRegistry, ZooKeeperCollector]:
    def fetch(host: str, port: int, timeout: float) -> str:
        return replies[f"{host}:{port}"]

    servers = parse_servers(",".join(replies))
    collector = ZooKeeperCollector(servers, timeout=0.5, fetch=fetch)
    registry = CollectorRegistry()
    registry.register(collector)
    return registry, collector


def test_collector_exports_each_server_and_up_0_for_the_silent_one() -> None:
    registry, collector = _collector(
        {"zk1:2181": MNTR_LEADER, "zk2:2181": "", "zk3:2181": MNTR_NOT_SERVING}
    )
    try:
        value = registry.get_sample_value
        assert value("pfxha_zookeeper_up", {"server": "zk1:2181"}) == 1
        assert value("pfxha_zookeeper_up", {"server": "zk2:2181"}) == 0
        assert value("pfxha_zookeeper_up", {"server": "zk3:2181"}) == 1
        for state in STATES:
            expected = 1 if state == "leader" else 0
            labels = {"server": "zk1:2181", "state": state}
            assert value("pfxha_zookeeper_server_state", labels) == expected
        assert (
            value("pfxha_zookeeper_server_state", {"server": "zk2:2181", "state": "leader"}) is None
        )
        not_serving = {"server": "zk3:2181", "state": "not_serving"}
        assert value("pfxha_zookeeper_server_state", not_serving) == 1
        zk1 = {"server": "zk1:2181"}
        assert value("pfxha_zookeeper_request_latency_seconds_count", zk1) == 1004
        assert value("pfxha_zookeeper_request_latency_seconds_sum", zk1) == pytest.approx(0.832)
        assert value("pfxha_zookeeper_max_latency_seconds", zk1) == pytest.approx(0.099)
        assert value("pfxha_zookeeper_outstanding_requests", zk1) == 0
        assert value("pfxha_zookeeper_alive_connections", zk1) == 1
        # Nothing but up for a server that said nothing.
        assert value("pfxha_zookeeper_outstanding_requests", {"server": "zk2:2181"}) is None
    finally:
        collector.close()


def test_servers_are_asked_at_once_not_one_after_another() -> None:
    """A scrape costs one timeout, not one per server: three fetches meet at a barrier."""
    barrier = threading.Barrier(3, timeout=5)

    def fetch(host: str, port: int, timeout: float) -> str:
        barrier.wait()  # raises BrokenBarrierError unless all three run concurrently
        return MNTR_LEADER

    collector = ZooKeeperCollector([("a", 1), ("b", 2), ("c", 3)], timeout=0.5, fetch=fetch)
    try:
        assert all(r.up for r in collector.read_all().values())
    finally:
        collector.close()


def test_a_change_of_a_servers_answer_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    replies = {"zk1:2181": MNTR_LEADER}
    _, collector = _collector(replies)
    try:
        with caplog.at_level(logging.INFO, logger="connector.zk_exporter"):
            collector.read_all()
            collector.read_all()
            replies["zk1:2181"] = ""
            collector.read_all()
            collector.read_all()
        messages = [r.getMessage() for r in caplog.records]
        assert messages == [
            "ZooKeeper server zk1:2181: up, leader",
            "ZooKeeper server zk1:2181: no answer",
        ]
    finally:
        collector.close()


def test_a_collector_needs_a_server() -> None:
    with pytest.raises(ZkExporterError):
        ZooKeeperCollector([])
