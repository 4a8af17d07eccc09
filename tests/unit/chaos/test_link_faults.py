"""Per-connector links and their cuts, without servers: URLs, LinkCut, Cascade.

The proxies here are real (loopback, no upstream needed until a client
connects); only their fault settings are looked at.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import pytest

from chaos.launch.connector import ConnectorEndpoints, ConnectorFleet
from chaos.launch.link_server import faults_from_json
from chaos.launch.links import (
    ConnectorLinks,
    check_wan,
    node_targets,
    proxied_url,
    upstream_of,
    wan,
)
from chaos.launch.proxy import LinkFaults, Toxics
from chaos.nemesis import FaultError, ProcessFault
from chaos.nemesis.link import Cascade, LinkCut, cut_faults

TARGETS = {
    "service": "https://127.0.0.1:8443",
    "ca:primary": "http://127.0.0.1:8888",
    "ca:primary:certdb": "postgresql://pfxha_reader@127.0.0.1:5432/certdb_primary",
    "ca:secondary": "http://127.0.0.1:8889",
}


@pytest.fixture(scope="module")
def links() -> Iterator[ConnectorLinks]:
    with ConnectorLinks(["c1", "c2"], TARGETS) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(links: ConnectorLinks) -> Iterator[None]:
    yield
    for proxies in links.proxies.values():
        for proxy in proxies.values():
            proxy.clear()


def test_urls_keep_scheme_credentials_and_path_and_change_only_host_and_port() -> None:
    dsn = "postgresql://pfxha_reader@10.0.0.5:5432/certdb_primary?sslmode=require"
    assert upstream_of(dsn) == ("10.0.0.5", 5432)
    assert proxied_url(dsn, ("127.0.0.1", 40001)) == (
        "postgresql://pfxha_reader@127.0.0.1:40001/certdb_primary?sslmode=require"
    )
    assert proxied_url("https://svc:8443", ("127.0.0.1", 7)) == "https://127.0.0.1:7"
    with pytest.raises(ValueError, match="no host and port"):
        upstream_of("http://ca.example/")


def test_each_connector_gets_its_own_proxy_per_target(links: ConnectorLinks) -> None:
    ports = links.ports()
    assert set(ports) == {"c1", "c2"}
    assert set(ports["c1"]) == set(TARGETS)
    every = [port for each in ports.values() for port in each.values()]
    assert len(set(every)) == len(every) == 8
    own = links.endpoints("c2")
    assert own.service_url == f"https://127.0.0.1:{ports['c2']['service']}"
    assert own.cas["primary"] == {
        "url": f"http://127.0.0.1:{ports['c2']['ca:primary']}",
        "certdb_dsn": f"postgresql://pfxha_reader@127.0.0.1:{ports['c2']['ca:primary:certdb']}"
        "/certdb_primary",
    }
    assert own.cas["secondary"] == {"url": f"http://127.0.0.1:{ports['c2']['ca:secondary']}"}
    assert set(links.select("c1", "ca:*")) == {"ca:primary", "ca:primary:certdb", "ca:secondary"}
    assert set(links.select("c1", "ca:primary*")) == {"ca:primary", "ca:primary:certdb"}
    with pytest.raises(KeyError, match="no link of c1 matches"):
        links.select("c1", "zookeeper")


def test_a_blackhole_cut_keeps_latency_for_the_heal_and_the_heal_restores_it(
    links: ConnectorLinks,
) -> None:
    wan = LinkFaults(up=Toxics(latency_s=0.04), down=Toxics(latency_s=0.04))
    links.proxy("c1", "service").set(wan)
    cut = LinkCut(links, "c1", ("service",), "blackhole")
    details = cut.inject()
    assert details == {"connector": "c1", "mode": "blackhole", "links": ["service"]}
    now = links.proxy("c1", "service").faults
    assert now.up.blackhole
    assert now.down.blackhole
    assert now.up.latency_s == 0.04
    assert links.proxy("c2", "service").faults == LinkFaults()  # only c1 is cut
    assert links.proxy("c1", "ca:primary").faults == LinkFaults()
    cut.inject()  # twice: the heal still finds the faults from before the first
    cut.heal()
    assert links.proxy("c1", "service").faults == wan
    cut.heal()  # idempotent
    assert links.proxy("c1", "service").faults == wan


def test_a_reset_cut_of_every_ca_and_an_unknown_target_cuts_nothing(
    links: ConnectorLinks,
) -> None:
    cut = LinkCut(links, "c2", ("ca:*",), "reset")
    assert cut.inject()["links"] == ["ca:primary", "ca:primary:certdb", "ca:secondary"]
    assert all(p.faults.reset for p in links.select("c2", "ca:*").values())
    assert not links.proxy("c2", "service").faults.reset
    cut.heal()
    assert not any(p.faults.reset for p in links.select("c2", "ca:*").values())

    bad = LinkCut(links, "c2", ("service", "ca:tertiary"))
    with pytest.raises(FaultError, match="ca:tertiary"):
        bad.inject()
    assert links.proxy("c2", "service").faults == LinkFaults()
    assert cut_faults(LinkFaults(), "reset") == LinkFaults(reset=True)
    with pytest.raises(ValueError, match="mode"):
        LinkCut(links, "c1", ("service",), "drop")  # type: ignore[arg-type]


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_cascade_cuts_the_successor_once_it_leads_and_heals_both() -> None:
    leader: list[tuple[str | None, int | None]] = [("c1", 7)]
    cut: list[str] = []
    healed: list[str] = []
    lock = threading.Lock()

    def fault(name: str) -> ProcessFault:
        def inject() -> None:
            with lock:
                cut.append(name)

        return ProcessFault(f"cut {name}", inject, lambda: healed.append(name))

    cascade = Cascade("c1", leader=lambda: leader[-1], cut=fault, above_epoch=7, poll_s=0.001)
    cascade.inject()
    assert cut == ["c1"]
    leader.append((None, None))  # nobody leads, then the old leader again: no second cut
    leader.append(("c1", 7))
    leader.append(("c2", 8))
    assert _wait(lambda: cascade.victims == ["c1", "c2"])
    leader.append(("c3", 9))
    cascade.heal()
    assert cut == ["c1", "c2"]
    assert healed == ["c2", "c1"]
    assert cascade.victims == []


def test_cascade_healed_before_any_successor_cuts_no_one_else() -> None:
    cut: list[str] = []
    cascade = Cascade(
        "c1",
        leader=lambda: ("c1", 3),
        cut=lambda name: ProcessFault(name, lambda: cut.append(name)),
        above_epoch=3,
        poll_s=0.001,
    )
    cascade.inject()
    cascade.heal()
    assert cut == ["c1"]
    assert cascade._thread is not None
    assert not cascade._thread.is_alive()


def test_fleet_writes_each_connectors_own_urls(tmp_path: Path) -> None:
    description = {
        "root": "/x/root.pem",
        "cas": {"primary": {"url": "http://127.0.0.1:1", "auth_key": "00", "certdb_dsn": "d"}},
        "templates": {"user-auth": ["primary"]},
    }
    fleet = ConnectorFleet(
        tmp_path,
        count=2,
        cluster="lab",
        zk_hosts="127.0.0.1:2181",
        service_url="http://127.0.0.1:2",
        cas=description,
        endpoints={
            "c2": ConnectorEndpoints("http://127.0.0.1:3", {"primary": {"url": "http://h:4"}})
        },
    )
    mine = fleet.write_config("c2").read_text()
    assert 'url = "http://127.0.0.1:3"' in mine
    assert 'url = "http://h:4"' in mine
    assert 'certdb_dsn = "d"' in mine
    theirs = fleet.write_config("c1").read_text()
    assert 'url = "http://127.0.0.1:2"' in theirs
    assert 'url = "http://127.0.0.1:1"' in theirs
    with pytest.raises(ValueError, match="unknown connectors: c9"):
        ConnectorFleet(
            tmp_path,
            cluster="lab",
            zk_hosts="z:1",
            service_url="u",
            cas=description,
            endpoints={"c9": ConnectorEndpoints()},
        )


def test_wan_puts_half_the_round_trip_on_each_direction_and_names_bad_settings() -> None:
    faults = wan(0.08, 0.02)
    assert faults.up == faults.down == Toxics(latency_s=0.04, jitter_s=0.01)
    assert wan(0.0) == LinkFaults()
    with pytest.raises(ValueError, match="--wan-rtt"):
        wan(-0.1)
    with pytest.raises(ValueError, match="--wan-jitter"):
        wan(0.02, 0.05)
    check_wan(None, 0.0)
    with pytest.raises(click.UsageError, match="--wan-jitter needs --wan-rtt"):
        check_wan(None, 0.01)


def test_set_all_gives_every_connector_the_same_baseline(links: ConnectorLinks) -> None:
    links.set_all("service", wan(0.02))
    assert {links.proxy(c, "service").faults for c in ("c1", "c2")} == {wan(0.02)}
    assert links.proxy("c1", "ca:primary").faults == LinkFaults()
    assert links.thread_cpu_s() >= 0.0


def test_faults_cross_to_the_link_server_as_json() -> None:
    faults = LinkFaults(up=Toxics(latency_s=0.1, blackhole=True), reset=True)
    assert faults_from_json(json.loads(json.dumps(asdict(faults)))) == faults


def test_every_node_of_an_openbao_cluster_gets_a_link_named_in_cluster_urls() -> None:
    cluster = "http://127.0.0.1:8202,http://127.0.0.1:8204"
    targets = {
        "ca:primary": "http://127.0.0.1:8200",
        **node_targets("primary", cluster),
        "ca:secondary": "http://127.0.0.1:8300",
    }
    assert node_targets("secondary", None) == {}
    assert list(targets) == ["ca:primary", "ca:primary:node2", "ca:primary:node3", "ca:secondary"]
    with ConnectorLinks(["c1"], targets) as bao:
        ports = bao.ports()["c1"]
        own = bao.endpoints("c1").cas
        assert own["primary"] == {
            "url": f"http://127.0.0.1:{ports['ca:primary']}",
            "cluster_urls": f"http://127.0.0.1:{ports['ca:primary:node2']}"
            f",http://127.0.0.1:{ports['ca:primary:node3']}",
        }
        assert set(bao.select("c1", "ca:primary*")) == {
            "ca:primary", "ca:primary:node2", "ca:primary:node3"
        }  # fmt: skip
        assert bao.upstreams["ca:primary:node3"] == ("127.0.0.1", 8204)
