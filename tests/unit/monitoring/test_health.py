"""The health endpoint: the pure verdict, then the real HTTP server on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connector.health import HealthServer, HealthSnapshot, evaluate
from connector.metrics import ConnectorMetrics


def _snap(role: str, **kw: object) -> HealthSnapshot:
    base: dict[str, object] = {"last_loop_turn": 100.0, "session_connected": True}
    base.update(kw)
    return HealthSnapshot(role=role, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("snapshot", "ready"),
    [
        (_snap("leader", lease_fresh=True, cas_reachable=1), True),
        (_snap("leader", lease_fresh=False, cas_reachable=2), False),
        (_snap("leader", lease_fresh=True, cas_reachable=0), False),
        (_snap("standby"), True),
        (_snap("standby", session_connected=False), False),
        (_snap("suspended"), False),
        (_snap("stopped"), False),
    ],
)
def test_readiness_by_role(snapshot: HealthSnapshot, ready: bool) -> None:
    report = evaluate(snapshot, now=101.0, max_loop_age=5.0)
    assert report.live
    assert report.ready is ready
    assert bool(report.reasons) is not ready


def test_stuck_loop_is_not_live_and_not_ready() -> None:
    report = evaluate(_snap("standby"), now=106.0, max_loop_age=5.0)
    assert not report.live
    assert not report.ready
    assert "loop last turned 6.0s ago" in report.reasons[0]


def test_no_provider_yet_is_live_but_not_ready() -> None:
    report = evaluate(None, now=0.0, max_loop_age=5.0)
    assert (report.live, report.ready) == (True, False)


class _Agent:
    """Stands in for the agent's snapshot method; the test moves its state."""

    def __init__(self) -> None:
        self.snapshot = _snap("standby", last_loop_turn=0.0)
        self.fail = False

    def __call__(self) -> HealthSnapshot:
        if self.fail:
            raise RuntimeError("agent state unreadable")
        return self.snapshot


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, ConnectorMetrics, httpx.Client]]:
    metrics = ConnectorMetrics(name="t")
    now = [0.0]
    server = HealthServer(metrics.registry, port=0, max_loop_age=5.0, clock=lambda: now[0])
    with server, httpx.Client(base_url=server.url, timeout=5) as client:
        yield server, metrics, client


def test_http_endpoints(served: tuple[HealthServer, ConnectorMetrics, httpx.Client]) -> None:
    server, metrics, client = served
    assert server.port != 0

    # Before the agent is attached: alive, not ready.
    assert client.get("/healthz").status_code == 200
    starting = client.get("/readyz")
    assert starting.status_code == 503
    assert "starting" in starting.json()["reasons"][0]

    agent = _Agent()
    server.set_provider(agent)
    assert client.get("/readyz").status_code == 200

    agent.snapshot = _snap(
        "leader", last_loop_turn=0.0, lease_fresh=False, cas_reachable=1, epoch=4
    )
    body = client.get("/readyz").json()
    assert body["ready"] is False
    assert body["snapshot"]["epoch"] == 4
    assert client.get("/healthz").status_code == 200

    agent.fail = True
    failed = client.get("/healthz")
    assert failed.status_code == 503
    assert "agent state unreadable" in failed.json()["reasons"][0]

    metrics.set_role("leader", reason="elected")
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert 'pfxha_connector_role{pfxha_connector_role="leader"} 1.0' in scrape.text
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")

    assert client.get("/nope").status_code == 404


def test_stop_releases_the_port() -> None:
    server = HealthServer(ConnectorMetrics().registry, port=0)
    server.start()
    port = server.port
    server.stop()
    again = HealthServer(ConnectorMetrics().registry, port=port)
    again.start()
    again.stop()


def test_a_connector_that_cannot_reconcile_is_not_ready() -> None:
    snapshot = HealthSnapshot(
        role="standby",
        last_loop_turn=100.0,
        session_connected=True,
        reconcile_problems=("primary: unreachable: certdb postgresql://r@h:5432/d",),
    )
    report = evaluate(snapshot, now=100.0, max_loop_age=30.0)
    assert report.live
    assert not report.ready
    assert report.reasons == (
        "cannot reconcile at primary: unreachable: certdb postgresql://r@h:5432/d",
    )
