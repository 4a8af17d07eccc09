"""Whether a connector's key pool is full, read from its ``/metrics`` text.

    body = httpx.get(fleet.metrics_url("c2") + "/metrics").text
    key_pool_full(body)    # True: every key type pooled up to its pool size

The drill waits for full pools between rounds: a standby restarted a moment
ago makes its first keys on demand if it takes over before its pool filled.
A key type with no pool size sample is not waited for.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["key_pool_full"]


def key_pool_full(metrics_text: str) -> bool:
    """Whether a connector's ``/metrics`` text shows every key type's pool at its size."""
    pooled: dict[str, float] = {}
    size: dict[str, float] = {}
    into = {"pfxha_connector_keys_pooled": pooled, "pfxha_connector_keys_pool_size": size}
    for family in text_string_to_metric_families(metrics_text):
        target = into.get(family.name)
        if target is not None:
            for sample in family.samples:
                target[sample.labels.get("key_type", "")] = sample.value
    return all(pooled.get(key_type, 0.0) >= want for key_type, want in size.items())
