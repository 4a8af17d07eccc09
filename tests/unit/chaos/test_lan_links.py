"""LAN links (issue 16, item 2): --ca-rtt and --zk-rtt, their links and their option checks.

The proxies here are real (loopback, no upstream needed until a client
connects); only their settings and addresses are looked at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import click
import pytest
from click.testing import CliRunner

from chaos.bench.flow import command as bench_flow
from chaos.drill.cli import drill
from chaos.lab.cli import up
from chaos.lab.lab import Lab
from chaos.launch.connector import ConnectorFleet
from chaos.launch.links import ConnectorLinks, check_lan, lan, zk_targets
from chaos.launch.proxy import LinkFaults, Toxics

ZK = "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"


def test_a_lan_round_trip_is_half_each_way_and_a_bad_one_names_its_option() -> None:
    assert lan(0.004, "--ca-rtt") == LinkFaults(
        up=Toxics(latency_s=0.002), down=Toxics(latency_s=0.002)
    )
    assert lan(0.0, "--zk-rtt") == LinkFaults()
    with pytest.raises(ValueError, match="--zk-rtt must be 0 or more"):
        lan(-0.001, "--zk-rtt")
    check_lan(ca_rtt=None, zk_rtt=0.001)
    with pytest.raises(click.UsageError, match="--ca-rtt must be 0 or more"):
        check_lan(ca_rtt=-1.0, zk_rtt=None)


def test_zookeeper_links_make_each_connectors_own_connect_string(tmp_path: Path) -> None:
    targets = {"service": "https://127.0.0.1:8443", **zk_targets(ZK)}
    assert zk_targets(ZK)["zk:2"] == "zk://127.0.0.1:2183"
    with ConnectorLinks(["c1", "c2"], targets) as links:
        ports = links.ports()
        own = links.endpoints("c2")
        assert own.zk_hosts == ",".join(f"127.0.0.1:{ports['c2'][f'zk:{i}']}" for i in range(3))
        assert links.endpoints("c1").zk_hosts != own.zk_hosts
        links.set_all("zk:*", lan(0.002, "--zk-rtt"))
        assert links.proxy("c1", "zk:0").faults.up.latency_s == 0.001
        assert links.proxy("c1", "service").faults == LinkFaults()
        description = {"cas": {}, "templates": {}}
        fleet = ConnectorFleet(tmp_path, count=2, cluster="lab", zk_hosts=ZK, service_url="u",
                               cas=description, endpoints={"c2": own})  # fmt: skip
        assert f'hosts = "{own.zk_hosts}"' in fleet.write_config("c2").read_text()
        assert f'hosts = "{ZK}"' in fleet.write_config("c1").read_text()
    # Without ZooKeeper links a connector keeps the ensemble's own connect string.
    with ConnectorLinks(["c1"], {"service": "https://127.0.0.1:8443"}) as plain:
        assert plain.endpoints("c1").zk_hosts is None


def test_a_lab_with_lan_round_trips_runs_on_links(tmp_path: Path) -> None:
    lab = Lab(tmp_path, ca_rtt=0.002, zk_rtt=0.001)
    assert lab.use_links
    assert lab.ca_lan == lan(0.002, "--ca-rtt")
    assert not Lab(tmp_path).use_links
    with pytest.raises(ValueError, match="--zk-rtt"):
        Lab(tmp_path, zk_rtt=-0.5)
    with pytest.raises(ValueError, match="single-host"):
        Lab(tmp_path, ca_rtt=0.002, hosts=True)


def test_a_lab_ca_timeout_goes_into_every_connectors_ca_entries(tmp_path: Path) -> None:
    class Tier:
        def describe(self, connector: str | None = None) -> dict[str, Any]:
            return {"root": "r", "cas": {"primary": {"url": "u1"}, "secondary": {"url": "u2"}}}

    lab = Lab(tmp_path, ca_timeout=0.3)
    lab.cas = cast(Any, Tier())
    cas = lab.ca_description("c1")["cas"]
    assert {name: spec["timeout_s"] for name, spec in cas.items()} == {
        "primary": 0.3,
        "secondary": 0.3,
    }
    plain = Lab(tmp_path)
    plain.cas = cast(Any, Tier())
    assert "timeout_s" not in plain.ca_description()["cas"]["primary"]
    with pytest.raises(ValueError, match="--ca-timeout"):
        Lab(tmp_path, ca_timeout=0.0)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        (drill, ["--ca-rtt", "-1"], "--ca-rtt must be 0 or more"),
        (drill, ["--zk-rtt", "0.002", "--no-links"], "--zk-rtt run(s) on the links"),
        (drill, ["--ca-rtt", "0.002", "--hosts"], "single-host"),
        (up, ["--zk-rtt", "-1"], "--zk-rtt must be 0 or more"),
        (bench_flow, ["--ca-rtt", "-0.1"], "--ca-rtt must be 0 or more"),
    ],
)
def test_bad_lan_options_are_refused_before_anything_starts(
    command: click.Command, args: list[str], message: str, tmp_path: Path
) -> None:
    extra = ["--dir", str(tmp_path)] if command is up else []
    result = CliRunner().invoke(command, [*args, *extra])
    assert result.exit_code != 0, result.output
    assert message in result.output
