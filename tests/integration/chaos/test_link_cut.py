"""LinkCut on the real service: one connector's link goes silent or resets, another's works.

Both ways the lab can hold the links: threads of this process, or a link server process.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from chaos.launch._process import LaunchError
from chaos.launch.link_server import LinkServer
from chaos.launch.links import ConnectorLinks, LinkBook, LinkHandle
from chaos.launch.service import ServiceProcess
from chaos.nemesis import FaultError
from chaos.nemesis.link import LinkCut

pytestmark = pytest.mark.timeout(60)


Links = LinkBook[LinkHandle]


@pytest.fixture(params=["threads", "process"])
def links(request: pytest.FixtureRequest, service: ServiceProcess) -> Iterator[Links]:
    kind = ConnectorLinks if request.param == "threads" else LinkServer
    with kind(["c1", "c2"], {"service": service.url}) as running:
        yield running


def _healthz(links: Links, connector: str, timeout: float = 5.0) -> int:
    # A fresh connection each time, as a client that reconnects after a failure would.
    with httpx.Client(timeout=timeout) as client:
        return client.get(links.url(connector, "service") + "/healthz").status_code


def test_a_blackholed_link_is_silent_for_its_connector_only_until_healed(links: Links) -> None:
    assert _healthz(links, "c1") == 200
    cut = LinkCut(links, "c1", ("service",), "blackhole")
    cut.inject()
    try:
        with pytest.raises(httpx.TimeoutException):
            _healthz(links, "c1", timeout=0.3)
        assert _healthz(links, "c2") == 200
    finally:
        cut.heal()
    assert _healthz(links, "c1") == 200
    stats = links.stats() if isinstance(links, LinkServer) else links.proxy("c1", "service").stats
    assert stats.discarded_bytes > 0


def test_a_reset_link_fails_at_once(links: Links) -> None:
    cut = LinkCut(links, "c2", ("service",), "reset")
    cut.inject()
    try:
        # An error of the connection, not a timeout (httpx's timeouts are none of these).
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            _healthz(links, "c2", timeout=30.0)
    finally:
        cut.heal()
    assert _healthz(links, "c2") == 200


def test_the_link_server_refuses_what_it_does_not_know_and_keeps_serving() -> None:
    with LinkServer(["c1"], {"service": "http://127.0.0.1:9"}) as server:
        with pytest.raises(LaunchError, match="refused set"):
            server.call({"op": "set", "connector": "c9", "target": "service", "faults": {}})
        with pytest.raises(LaunchError, match="unknown op"):
            server.call({"op": "shutdown"})
        with pytest.raises(FaultError, match="ca:\\*"):
            LinkCut(server, "c1", ("ca:*",)).inject()
        LinkCut(server, "c1", ("service",), "reset").inject()
        assert server.proxy("c1", "service").faults.reset
        assert server.stats().connections == 0
        pid = server.pid
    assert pid is not None
    assert server.process is None
