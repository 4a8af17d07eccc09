"""The key pool's gauges, as the drill reads them to tell a warm standby from a cold one."""

from __future__ import annotations

from prometheus_client import generate_latest

from chaos.launch.connector import key_pool_full
from connector.metrics import ConnectorMetrics


def test_the_pool_gauges_follow_the_pool_and_say_when_it_is_full() -> None:
    pooled = {"rsa2048": 3, "p256": 16}
    metrics = ConnectorMetrics(name="c1")
    metrics.watch_key_pool(pooled.__getitem__, ["rsa2048", "p256"], 16)

    text = generate_latest(metrics.registry).decode()
    assert 'pfxha_connector_keys_pooled{key_type="rsa2048"} 3.0' in text
    assert 'pfxha_connector_keys_pool_size{key_type="p256"} 16.0' in text
    assert not key_pool_full(text)

    pooled["rsa2048"] = 16  # read at each scrape, not copied at start
    assert key_pool_full(generate_latest(metrics.registry).decode())


def test_a_connector_without_a_pool_counts_as_full() -> None:
    metrics = ConnectorMetrics(name="c1")
    assert key_pool_full(generate_latest(metrics.registry).decode())
