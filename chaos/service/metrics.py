"""The service's Prometheus metrics, in their own registry.

Counters are bumped by the API (stale-epoch rejections); gauges are read from
the database at scrape time, so they are always what the store says::

    metrics = ServiceMetrics(snapshot=lambda: read_gauges(store))
    metrics.stale_rejected("requests/poll")
    text = generate_latest(metrics.registry)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GaugeSnapshot", "ServiceMetrics"]


@dataclass(frozen=True)
class GaugeSnapshot:
    requests_by_state: dict[str, int] = field(default_factory=dict)
    revocations_by_state: dict[str, int] = field(default_factory=dict)
    highest_epoch: int = 0
    active_connector: str | None = None
    connectors_by_health: dict[str, int] = field(default_factory=dict)


class _StoreCollector(Collector):
    def __init__(self, snapshot: Callable[[], GaugeSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        requests = GaugeMetricFamily(
            "pfxha_service_requests", "Certificate requests by state", labels=["state"]
        )
        for state, count in sorted(snap.requests_by_state.items()):
            requests.add_metric([state], count)
        yield requests
        revocations = GaugeMetricFamily(
            "pfxha_service_revocations", "Revocation requests by state", labels=["state"]
        )
        for state, count in sorted(snap.revocations_by_state.items()):
            revocations.add_metric([state], count)
        yield revocations
        yield GaugeMetricFamily(
            "pfxha_service_highest_epoch",
            "Highest connector epoch ever registered",
            value=snap.highest_epoch,
        )
        active = GaugeMetricFamily(
            "pfxha_service_active_connector",
            "1 for the connector shown as active (highest live epoch)",
            labels=["name"],
        )
        if snap.active_connector is not None:
            active.add_metric([snap.active_connector], 1)
        yield active
        health = GaugeMetricFamily(
            "pfxha_service_connectors", "Known connectors by health", labels=["health"]
        )
        for state, count in sorted(snap.connectors_by_health.items()):
            health.add_metric([state], count)
        yield health


class ServiceMetrics:
    def __init__(self, snapshot: Callable[[], GaugeSnapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._stale = Counter(
            "pfxha_service_stale_epoch_rejections",
            "Connector calls refused with 409 for a stale epoch",
            ["endpoint"],
            registry=self.registry,
        )
        self._revoked = Counter(
            "pfxha_service_revoked_connector_calls",
            "Connector calls refused with 403 because an admin revoked that connector",
            ["endpoint"],
            registry=self.registry,
        )
        self._forged = Counter(
            "pfxha_service_forged_epoch_refusals",
            "Registers refused as suspected forgeries, by kind: bound (above the maximum "
            "epoch) or jump (beyond the epoch-advance budget)",
            ["kind"],
            registry=self.registry,
        )
        self._auth = Counter(
            "pfxha_service_auth_refusals",
            "Calls refused because the caller did not prove who it is (401/403)",
            ["api", "reason"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(snapshot))

    def auth_refused(self, api: str, reason: str) -> None:
        """``reason`` is a fixed word (no_certificate, wrong_ca, expired, name_mismatch,
        bad_credential, bad_token): never anything the caller sent."""
        self._auth.labels(api=api, reason=reason).inc()

    def forged_refused(self, kind: str) -> None:
        """``kind``: ``bound`` or ``jump`` (a fixed word, never caller input)."""
        self._forged.labels(kind=kind).inc()

    def revoked_refused(self, endpoint: str) -> None:
        self._revoked.labels(endpoint=endpoint).inc()

    def stale_rejected(self, endpoint: str) -> None:
        self._stale.labels(endpoint=endpoint).inc()
