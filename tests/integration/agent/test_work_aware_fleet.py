"""Work-aware leadership with real connector processes, ZooKeeper, CFSSL and the service.

Each connector reaches the service through its own :class:`FaultProxy`, so one
member's link can be cut while the others (and ZooKeeper) are untouched: the
gray failure a session timeout never sees.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chaos.bench._tenant import Tenant
from chaos.lab.lab import LAB_WORK_AWARE
from chaos.launch import wait_for
from chaos.launch.cfssl import CfsslLab
from chaos.launch.connector import ConnectorEndpoints, ConnectorFleet
from chaos.launch.proxy import FaultProxy, LinkFaults, Toxics
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from tests.fixtures.service import unique
from tests.integration.agent.test_connector_flow import wait_issued

CLUSTER = "work-aware-it"
CUT = LinkFaults(up=Toxics(blackhole=True), down=Toxics(blackhole=True))


@contextlib.contextmanager
def _fleet(
    tmp_path: Path, zk: ZooKeeperEnsemble, lab: CfsslLab, service: ServiceProcess
) -> Iterator[tuple[ConnectorFleet, dict[str, FaultProxy]]]:
    url = httpx.URL(service.url)
    names = ["c1", "c2", "c3"]
    proxies = {n: FaultProxy((url.host, url.port or 80)).start() for n in names}
    try:
        fleet = ConnectorFleet(
            tmp_path / "connectors",
            count=3,
            cluster=CLUSTER,
            zk_hosts=zk.hosts,
            service_url=service.url,
            cas=lab.describe(),
            session_timeout=1.0,
            loop={**LAB_WORK_AWARE, "poll_wait_s": 0.3, "heartbeat_interval_s": 0.5},
            endpoints={
                n: ConnectorEndpoints(service_url=f"{url.scheme}://{p.address}")
                for n, p in proxies.items()
            },
        )
        fleet.start()
        try:
            yield fleet, proxies
        finally:
            fleet.stop(grace=5)
    finally:
        for proxy in proxies.values():
            proxy.stop()


def _events(fleet: ConnectorFleet, name: str, event_id: int) -> list[dict[str, object]]:
    found = []
    for line in fleet.log_lines(name):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event_id") == event_id:
                found.append(record)
    return found


@pytest.fixture
def tenant(admin: httpx.Client) -> Tenant:
    t = Tenant(admin, prefix=unique("w"), template="user-auth", key_type="p256")
    t.create_profile()
    return t


def test_a_leader_cut_from_the_service_hands_over_to_a_standby_that_reaches_it(
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
    tenant: Tenant,
) -> None:
    with _fleet(tmp_path, zk_ensemble, cfssl_cas, service) as (fleet, proxies):
        leader = fleet.wait_for_leader()
        _, epoch = fleet.leader()  # type: ignore[misc]
        tenant.enroll(1)
        wait_issued(tenant, 1, fleet=fleet)
        # Only the leader's service link (ZooKeeper and the CAs stay reachable).
        proxies[leader].set(CUT)
        successor = fleet.wait_for_leader(exclude=leader, above_epoch=epoch, timeout=20)
        assert successor != leader
        tenant.enroll(2)
        wait_issued(tenant, 3, timeout=30, fleet=fleet)
        yielded = _events(fleet, leader, 5230)
        assert yielded, "the old leader did not say it handed over"
        assert "service unreachable" in str(yielded[0].get("reason"))
        # The cut member keeps out of the line while it cannot reach the service.
        assert _events(fleet, leader, 5232)


def test_the_service_down_for_everyone_moves_no_lease(
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
    tenant: Tenant,
) -> None:
    with _fleet(tmp_path, zk_ensemble, cfssl_cas, service) as (fleet, proxies):
        leader = fleet.wait_for_leader()
        before = fleet.leader()
        for proxy in proxies.values():
            proxy.set(CUT)
        # Well past yield_after_s (2 s): wait until every member reports the
        # service unreachable, then some more, and the same leader still leads.
        wait_for(
            lambda: all(_events(fleet, n, 5221) for n in fleet.names),
            timeout=20,
            what="every member to find the service unreachable",
        )
        wait_for(
            lambda: len(_events(fleet, leader, 5221)) >= 4,
            timeout=20,
            what="the leader to keep failing for a while",
        )
        assert_lease_kept(fleet, before)
        assert not _events(fleet, leader, 5230)
        for proxy in proxies.values():
            proxy.clear()
        tenant.enroll(1)
        wait_issued(tenant, 1, timeout=30, fleet=fleet)
        assert_lease_kept(fleet, before)


def assert_lease_kept(fleet: ConnectorFleet, before: tuple[str, int] | None) -> None:
    """The same member leads and no other was ever elected.

    Its epoch may have grown: a leader whose ZooKeeper connection was suspended
    for a moment (a ping answered late on a loaded machine) resumes its own lease
    under the next epoch (5001 "reconnected with the lease still held"), which
    moves no lease (a fresh-clone CI run saw c2 go from epoch 3 to 4 that way).
    """
    now = fleet.leader()
    assert now is not None
    assert before is not None
    assert now[0] == before[0]
    assert now[1] >= before[1]
    for other in fleet.names:
        if other != now[0]:
            assert not _events(fleet, other, 5001), f"{other} was elected"
    elections = [e for e in _events(fleet, now[0], 5001) if e.get("logger") == "pfxha.election"]
    for resumed in elections[1:]:
        assert "reconnected with the lease still held" in str(resumed.get("message"))
