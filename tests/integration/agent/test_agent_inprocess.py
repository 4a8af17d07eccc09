"""The agent loop in-process against the real service and real CFSSL.

The election is replaced by a stub that claims leadership with a given epoch:
that is exactly the position of a deposed leader whose own clock has not
noticed yet, the case only the service's 409 can stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from chaos.bench._tenant import Tenant
from chaos.launch.cfssl import CfsslLab
from chaos.launch.service import ServiceProcess
from connector.agent.decide import Action, Decision
from connector.agent.executor import ExecutorDeps
from connector.agent.loop import Agent
from connector.agent.runtime import make_pki
from connector.ca import CAError, is_retryable, router_from_description
from connector.config import LoopSettings
from connector.pki import KeyPool, KeyType
from connector.service_client import ServiceClient
from election import Role
from tests.fixtures.service import next_epoch, unique


class StubElector:
    """Claims to lead with ``epoch`` until released."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.role = Role.LEADER
        self.released: list[str] = []
        self.left: list[str] = []

    def fresh_epoch(self) -> int | None:
        return self.epoch if self.role is Role.LEADER else None

    def release(self, reason: str) -> None:
        self.released.append(reason)
        self.role = Role.STANDBY

    def leave(self, reason: str) -> None:
        self.left.append(reason)
        self.role = Role.STOPPED


@pytest.fixture
def make_agent(
    service: ServiceProcess, cfssl_cas: CfsslLab
) -> Iterator[Callable[..., tuple[Agent, StubElector]]]:
    closers: list[Callable[[], None]] = []

    def make(
        epoch: int,
        *,
        service_url: str | None = None,
        timeout: float = 5.0,
        description: dict[str, Any] | None = None,
    ) -> tuple[Agent, StubElector]:
        name = unique("inproc")
        client = ServiceClient(service_url or service.url, timeout=timeout)
        router = router_from_description(
            description or cfssl_cas.describe(), call_timeout_s=0.5, breaker_reset_s=1.0
        )
        pool = KeyPool({KeyType.P256: 2})
        elector = StubElector(epoch)
        loop = LoopSettings(poll_wait_s=0.2, heartbeat_interval_s=0.5, backoff_s=0.2)
        deps = ExecutorDeps(
            name=name,
            service=client,
            issuer=router,
            pki=make_pki(pool, client.kra_certificate),
            lease=elector,
            ca_errors=(CAError,),
            is_retryable=is_retryable,
            poll_wait_s=loop.poll_wait_s,
            workers=2,
            backoff_s=loop.backoff_s,
            details=lambda: {"cas": router.ca_states()},
        )
        agent = Agent(deps=deps, elector=elector, templates=router.templates, loop=loop)
        closers.append(client.close)
        closers.append(agent.executor.close)
        return agent, elector

    yield make
    for close in closers:
        close()


def turn_until(agent: Agent, done: Callable[[], bool], timeout: float = 30.0) -> list[Decision]:
    """Turn the agent's loop as :meth:`Agent.run` does until ``done()``, for ``timeout`` s.

    Bounded by time, not by a number of turns: a wake left set by a worker used to
    make every later wait return at once, and 200 turns could pass in a few
    milliseconds before the CA deadline had handed a request back (CI failure of
    ``test_every_ca_down_reports_unhealthy_and_keeps_requests_queued``).
    """
    decisions = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        decisions.append(agent.run_once())
        if done():
            return decisions
        if decisions[-1].action is Action.WAIT:
            agent._wake.wait(decisions[-1].wait_s)
            agent._wake.clear()
    last = [d.reason for d in decisions[-5:]]
    raise AssertionError(f"not done within {timeout} s ({len(decisions)} turns): {last}")


def states(tenant: Tenant) -> list[str]:
    return sorted(r["state"] for r in tenant.requests())


def leading_with_work(
    make_agent: Callable[..., tuple[Agent, StubElector]],
    admin: httpx.Client,
    prefix: str,
    devices: int,
) -> tuple[Agent, StubElector, Tenant, int]:
    """An agent leading at a fresh epoch that has issued for ``devices`` new devices."""
    epoch = next_epoch(admin)
    agent, elector = make_agent(epoch)
    tenant = Tenant(admin, prefix=unique(prefix), key_type="p256")
    tenant.create_profile()
    tenant.enroll(devices)
    turn_until(agent, lambda: states(tenant) == ["issued"] * devices)
    return agent, elector, tenant, epoch


def connector_row(admin: httpx.Client, name: str) -> dict[str, Any]:
    rows = admin.get("/api/v1/read/connectors").json()
    return next(r for r in rows if r["name"] == name)


def test_a_409_stops_the_leader_at_once_and_it_steps_down(
    make_agent: Callable[..., tuple[Agent, StubElector]], admin: httpx.Client, service: Any
) -> None:
    agent, elector, tenant, epoch = leading_with_work(make_agent, admin, "f", 2)

    # Another connector takes over at the service; our stub still believes it leads.
    with ServiceClient(service.url) as other:
        other.register(unique("usurper"), epoch + 1)
    tenant.enroll(2)
    decisions = turn_until(agent, lambda: bool(elector.released))

    assert decisions[-1].action is Action.STEP_DOWN
    assert "409" in elector.released[0]
    # Stepping down was the very next decision after the refused call.
    assert decisions[-2].action in (Action.HEARTBEAT, Action.REVOKE, Action.ISSUE)
    assert agent.state.rejected_epoch is None
    assert agent.state.registered_epoch is None
    # Nothing of the new work was touched under the refused epoch.
    assert states(tenant) == ["issued", "issued", "pending", "pending"]
    assert all(r["intent_epoch"] in (None, epoch) for r in tenant.requests())
    # Standing by, it only heartbeats as a standby from now on.
    follow = [agent.run_once() for _ in range(3)]
    assert all(d.action in (Action.WAIT, Action.HEARTBEAT) and not d.as_leader for d in follow)


def test_a_revoked_leader_leaves_the_election_at_once_and_never_acts_again(
    make_agent: Callable[..., tuple[Agent, StubElector]], admin: httpx.Client
) -> None:
    agent, elector, tenant, _ = leading_with_work(make_agent, admin, "rv", 1)

    name = agent.executor.deps.name
    admin.post(
        f"/api/v1/admin/connectors/{name}/revoke", json={"reason": "test"}
    ).raise_for_status()
    tenant.enroll(1)
    decisions = turn_until(agent, lambda: bool(elector.left))

    assert decisions[-1].action is Action.LEAVE
    assert "revoked" in elector.left[0]
    # Leaving was the very next decision after the first refused call.
    assert decisions[-2].action in (Action.HEARTBEAT, Action.REVOKE, Action.ISSUE)
    assert agent.state.revoked is not None
    # Out of the election for good: only waits, never another call or a lease.
    follow = [agent.run_once() for _ in range(3)]
    assert {d.action for d in follow} == {Action.WAIT}
    assert elector.role is Role.STOPPED
    assert elector.released == []
    assert states(tenant) == ["issued", "pending"]


def test_every_ca_down_reports_unhealthy_and_keeps_requests_queued(
    make_agent: Callable[..., tuple[Agent, StubElector]],
    admin: httpx.Client,
    cfssl_cas: CfsslLab,
) -> None:
    agent, _ = make_agent(next_epoch(admin))
    turn_until(agent, lambda: agent.state.reconciled_epoch is not None)
    tenant = Tenant(admin, prefix=unique("d"), key_type="p256")
    tenant.create_profile()
    for name in cfssl_cas.names:
        cfssl_cas.kill(name)
    tenant.enroll(2)
    turn_until(
        agent,
        lambda: connector_row(admin, agent.name)["health"] == "unhealthy",
    )
    # Requests already in a worker's hands go back to the queue once their CA
    # deadline (bounded by the lease) has passed: wait for that, not longer.
    turn_until(agent, lambda: states(tenant) == ["pending", "pending"])
    assert agent.last_decision is not None

    for name in cfssl_cas.names:
        cfssl_cas.start(name)
    turn_until(agent, lambda: states(tenant) == ["issued", "issued"], timeout=60.0)
    turn_until(agent, lambda: connector_row(admin, agent.name)["health"] == "healthy")


def test_service_frozen_mid_issuance_loses_nothing_and_leaves_no_orphan(
    make_agent: Callable[..., tuple[Agent, StubElector]],
    start_service: Callable[..., ServiceProcess],
    cfssl_cas: CfsslLab,
) -> None:
    svc = start_service()
    with svc.admin_client() as admin:
        agent, _ = make_agent(1, service_url=svc.url, timeout=1.0)
        turn_until(agent, lambda: agent.state.reconciled_epoch == 1)
        tenant = Tenant(admin, prefix=unique("s"), key_type="p256")
        tenant.create_profile()
        tenant.enroll(6)
        # Freeze the service the moment requests are in the workers' hands.
        turn_until(agent, lambda: agent.executor.in_hand > 0)
        svc.pause()
        try:
            stalled_until = time.monotonic() + 3.0
            while time.monotonic() < stalled_until:
                decision = agent.run_once()
                if decision.action is Action.WAIT:
                    agent._wake.wait(decision.wait_s)
        finally:
            svc.resume()
        assert agent.state.counts["stalled"] >= 1
        turn_until(agent, lambda: states(tenant) == ["issued"] * 6, timeout=60.0)
        rows = tenant.requests()
    by_device: dict[str, list[tuple[int, bool]]] = {}
    for ca in cfssl_cas.names:
        for record in cfssl_cas.certdb(ca).records():
            for attr in record.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
                by_device.setdefault(str(attr.value), []).append((record.serial, record.revoked))
    for row in rows:
        unrevoked = [serial for serial, revoked in by_device[row["device_id"]] if not revoked]
        assert unrevoked == [int(row["serial"])], (row, by_device[row["device_id"]])


def test_primary_ca_down_secondary_issues_and_health_is_warning(
    make_agent: Callable[..., tuple[Agent, StubElector]],
    admin: httpx.Client,
    cfssl_cas: CfsslLab,
) -> None:
    agent, _ = make_agent(next_epoch(admin))
    turn_until(agent, lambda: agent.state.reconciled_epoch is not None)
    tenant = Tenant(admin, prefix=unique("p"), key_type="p256")
    tenant.create_profile()
    cfssl_cas.kill("primary")
    tenant.enroll(3)
    turn_until(agent, lambda: states(tenant) == ["issued"] * 3, timeout=60.0)
    assert {r["ca_name"] for r in tenant.requests()} == {"secondary"}
    turn_until(agent, lambda: connector_row(admin, agent.name)["health"] == "warning")


def test_revocation_event_is_revoked_at_the_issuing_ca_and_on_its_crl(
    make_agent: Callable[..., tuple[Agent, StubElector]],
    admin: httpx.Client,
    cfssl_cas: CfsslLab,
) -> None:
    agent, _ = make_agent(next_epoch(admin))
    tenant = Tenant(admin, prefix=unique("r"), key_type="p256")
    tenant.create_profile()
    devices = tenant.enroll(2)
    turn_until(agent, lambda: states(tenant) == ["issued", "issued"])
    target = next(r for r in tenant.requests() if r["device_id"] == devices[0].id)
    response = admin.post("/api/v1/admin/actions/block", json={"device_id": devices[0].id})
    assert response.status_code < 300, response.text

    def revoked_and_confirmed() -> bool:
        rows = admin.get("/api/v1/read/revocations").json()
        return any(r["request_id"] == target["id"] and r["state"] == "done" for r in rows)

    turn_until(agent, revoked_and_confirmed)
    ca, serial = target["ca_name"], int(target["serial"])
    record = cfssl_cas.certdb(ca).by_serial(serial)
    assert record is not None
    assert record.revoked
    crl = x509.load_der_x509_crl(httpx.get(cfssl_cas.crl_url(ca), timeout=5).content)
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    # The other device's certificate is untouched.
    other = next(r for r in tenant.requests() if r["device_id"] == devices[1].id)
    untouched = cfssl_cas.certdb(other["ca_name"]).by_serial(int(other["serial"]))
    assert untouched is not None
    assert not untouched.revoked


def test_a_profile_the_connector_refuses_fails_the_request_with_a_reason(
    make_agent: Callable[..., tuple[Agent, StubElector]], admin: httpx.Client
) -> None:
    agent, _ = make_agent(next_epoch(admin))
    prefix = unique("bad")
    response = admin.post(
        "/api/v1/admin/profiles",
        json={
            "id": f"{prefix}-profile",
            "key_type": "p256",
            "template": "user-auth",
            "validity_days": 30,
            "renewal_threshold_percent": 20,
            "subject_template": "CN={{NoSuchVariable}}",
            "san_templates": [],
        },
    )
    assert response.status_code < 300, response.text
    tenant = Tenant(admin, prefix=prefix, key_type="p256")
    tenant.profile_id = f"{prefix}-profile"
    admin.post("/api/v1/admin/groups", json={"id": tenant.group_id, "name": "bad"})
    tenant.assign()
    tenant.enroll(1)
    turn_until(agent, lambda: states(tenant) == ["failed"])
    (row,) = tenant.requests()
    assert "NoSuchVariable" in row["reason"]
    assert row["serial"] is None


def test_a_leader_that_never_gets_a_fresh_lease_hands_it_over(
    make_agent: Callable[..., tuple[Agent, StubElector]],
) -> None:
    # An elector stuck in "leader" without ever confirming its lease (seen once
    # after a crash takeover): the agent must not sit on the lease forever.
    agent, elector = make_agent(5)
    elector.fresh_epoch = lambda: None  # type: ignore[method-assign]
    agent.lease_unfresh_limit_s = 0.3
    decisions = turn_until(agent, lambda: bool(elector.released), timeout=10.0)
    assert decisions[-1].action is Action.STEP_DOWN
    assert "fresh lease" in elector.released[0]
    assert all(d.action is Action.WAIT for d in decisions[:-1])
