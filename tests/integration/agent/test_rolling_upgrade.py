"""A rolling upgrade of three connector processes, as docs/deployment.md describes it.

Real ZooKeeper (one node: the upgrade is of the connectors), real CFSSL, the
real service; devices enrol all the while. Each member is restarted with SIGTERM
and started again reporting another release (``ConnectorFleet.restart(version=)``:
the same code under a new release string, the lab's stand-in for a new package),
standbys first, the leader last after ``pfxha switchover`` to an upgraded standby.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from kazoo.client import KazooClient
from prometheus_client.parser import text_string_to_metric_families

from chaos.bench._tenant import Tenant
from chaos.launch import wait_for
from chaos.launch.cfssl import CfsslLab
from chaos.launch.connector import ConnectorFleet
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from connector import __version__
from connector.cli import root
from election import open_client, read_cluster_status, read_history
from tests.fixtures.service import unique
from tests.integration.agent.test_connector_flow import (
    assert_one_unrevoked_per_request,
    wait_issued,
)

pytestmark = pytest.mark.timeout(180)

CLUSTER = "rolling-upgrade-it"
OLD = __version__
NEW = "0.1.1-upgrade-test"


class Workload:
    """Enrols one device after another until stopped: a request each, never paused."""

    def __init__(self, service: ServiceProcess, prefix: str) -> None:
        self.service = service
        self.prefix = prefix
        self.enrolled = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.service.admin_client() as client:
                tenant = Tenant(client, prefix=self.prefix, template="user-auth", key_type="p256")
                while not self._stop.wait(0.05):
                    tenant.enroll(1)
                    self.enrolled += 1
        except BaseException as exc:  # reported by __exit__ and the test
            self.error = exc

    def wait_enrolled(self, more_than: int, timeout: float = 20.0) -> None:
        wait_for(lambda: self.enrolled > more_than, timeout=timeout, what="devices enrolled")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _leaderships(client: KazooClient) -> list[tuple[int, str]]:
    return [(entry.epoch, entry.name) for entry in read_history(client, CLUSTER)]


def _leaderships_at(zk: ZooKeeperEnsemble) -> list[tuple[int, str]]:
    with open_client(zk.hosts) as client:
        return _leaderships(client)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(root, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _versions(zk: ZooKeeperEnsemble) -> dict[str, str]:
    """Each member's version as `pfxha status --json` prints it."""
    status = json.loads(_cli("status", "--hosts", zk.hosts, "--cluster", CLUSTER, "--json"))
    return {m["name"]: m["version"] for m in status["members"]}


@pytest.fixture
def fleet(
    tmp_path: Path, zk_single: ZooKeeperEnsemble, cfssl_cas: CfsslLab, service: ServiceProcess
) -> Iterator[ConnectorFleet]:
    fleet = ConnectorFleet(
        tmp_path / "connectors",
        count=3,
        cluster=CLUSTER,
        zk_hosts=zk_single.hosts,
        service_url=service.url,
        cas=cfssl_cas.describe(),
        # The deploy/ session: a restart is SIGTERM, so nothing waits for it to expire.
        session_timeout=2.0,
        loop={"poll_wait_s": 0.3, "heartbeat_interval_s": 0.5, "keypool_size": 4},
    )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop(grace=5)


def test_rolling_upgrade_loses_no_request_and_hands_over_once(
    fleet: ConnectorFleet,
    zk_single: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
    admin: Any,
) -> None:
    prefix = unique("ru")
    Tenant(admin, prefix=prefix, template="user-auth", key_type="p256").create_profile()
    rows_of = Tenant(admin, prefix=prefix, template="user-auth", key_type="p256")
    fleet.wait_for_leader()
    assert set(_versions(zk_single).values()) == {OLD}
    started = time.monotonic()
    with open_client(zk_single.hosts) as client, Workload(service, prefix) as workload:
        before = _leaderships(client)
        first_epoch, leader = before[-1]
        assert fleet.leader(client) == (leader, first_epoch)
        standbys = [n for n in fleet.names if n != leader]
        steps: dict[str, list[tuple[int, str]]] = {}

        def upgrade(name: str) -> None:
            seen = len(_leaderships(client))
            enrolled = workload.enrolled
            fleet.restart(name, version=NEW)
            # Back as a member of the new release, in the election line, before the next.
            wait_for(
                lambda: (
                    _versions(zk_single).get(name) == NEW
                    and name in [c.name for c in read_cluster_status(client, CLUSTER).line]
                ),
                timeout=20,
                what=f"{name} registered as {NEW}",
            )
            workload.wait_enrolled(enrolled)  # requests kept arriving across this step
            steps[name] = _leaderships(client)[seen:]

        for name in standbys:
            upgrade(name)
            # Nothing handed over: at most the leader itself resumed its lease with a
            # new epoch (a connection blip on a loaded machine), never another member.
            assert {n for _, n in steps[name]} <= {leader}, steps
            assert fleet.leader(client)[0] == leader  # type: ignore[index]

        # The leader last: hand over to an upgraded standby, then upgrade it as a standby.
        target = standbys[0]
        seen = len(_leaderships(client))
        out = _cli("switchover", "--hosts", zk_single.hosts, "--cluster", CLUSTER, "--to", target)
        assert f"{target} leads with epoch" in out
        steps["switchover"] = _leaderships(client)[seen:]
        upgrade(leader)
        workload.wait_enrolled(workload.enrolled)
    upgrade_s = time.monotonic() - started
    assert workload.error is None, repr(workload.error)

    # One change of leader for the whole upgrade: the switchover, to the target.
    assert [n for _, n in steps["switchover"]][:1] == [target], steps
    assert {n for _, n in steps["switchover"] + steps[leader]} == {target}, steps
    after = _leaderships_at(zk_single)[len(before) :]
    changes = [n for i, (_, n) in enumerate(after) if n != ([leader] + [m for _, m in after])[i]]
    assert changes == [target], after
    last_epoch, last_name = after[-1]
    assert fleet.leader() == (last_name, last_epoch)
    assert last_name == target
    assert _versions(zk_single) == {name: NEW for name in fleet.names}
    drift = _cli("show-config", "--hosts", zk_single.hosts, "--cluster", CLUSTER)
    assert "all 3 members run the same version and configuration" in drift
    for name in fleet.names:  # and what Prometheus scrapes (the dashboard's versions table)
        text = httpx.get(fleet.metrics_url(name) + "/metrics", timeout=5).text
        [info] = [
            sample.labels
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "pfxha_connector_build_info"
        ]
        assert (info["name"], info["version"]) == (name, NEW)

    # Zero requests lost: every request enrolled during the upgrade is issued, and
    # each device holds exactly one unrevoked certificate, the delivered one.
    rows = wait_issued(rows_of, workload.enrolled, fleet=fleet)
    assert len(rows) == workload.enrolled
    assert {r["epoch"] for r in rows} <= {first_epoch} | {e for e, _ in after}
    orphans = assert_one_unrevoked_per_request(cfssl_cas, rows)
    print(
        f"rolling upgrade: {len(rows)} requests issued, {orphans} revoked orphans, "
        f"leaderships during it {after}, upgrade {upgrade_s:.1f}s"
    )
