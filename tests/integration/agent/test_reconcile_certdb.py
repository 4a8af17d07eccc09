"""Reconciliation is never silently off: a blind certdb holds old intents, not new work.

A deposed leader (epoch E) recorded an intent and got a certificate from the
CA, then died before uploading it: an orphan. The next leader (E+1) reads
the CAs' certdbs over PostgreSQL as the read-only role, but its password is
wrong. It must not issue that request anew while the orphan may be valid:
the intent stays in flight, the connector says it is unhealthy and not
ready, and fresh requests are still served. Once the certdb answers, the
orphan is revoked (superseded) and the request issued anew: exactly one
unrevoked certificate per request.

A deposed leader's sign request can also arrive late, after the takeover
(held by a cut link, delivered when it heals): the new leader keeps searching
the keys it settled and revokes what turns up (connector/agent/late.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from chaos.bench._tenant import Tenant
from chaos.checkers import Snapshot, attribute_certificates
from chaos.checkers.state import ServiceDb, ca_certificates
from chaos.launch.cfssl import CfsslLab
from chaos.launch.proxy import FaultProxy, LinkFaults, Toxics
from connector.agent.loop import Agent
from connector.agent.runtime import CertDBProbe, make_pki
from connector.ca import router_from_description
from connector.health import evaluate
from connector.pki import KeyPool, KeyType
from connector.service_client import ServiceClient
from tests.fixtures.service import next_epoch, unique
from tests.integration.agent.test_agent_inprocess import (
    StubElector,
    connector_row,
    make_agent,  # noqa: F401 - the fixture
    states,
    turn_until,
)


def _unrevoked_by_device(lab: CfsslLab) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for ca in lab.names:
        for record in lab.certdb(ca).records():
            for attr in record.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
                out.setdefault(str(attr.value), [])
                if not record.revoked:
                    out[str(attr.value)].append(record.serial)
    return out


def _deposed_leader_leaves_an_orphan(
    service_url: str, lab: CfsslLab, epoch: int
) -> tuple[str, int]:
    """Epoch ``epoch`` polls one request, records its intent, gets it issued, and dies."""
    name = unique("deposed")
    router = router_from_description(lab.describe())
    with ServiceClient(service_url) as client:
        client.register(name, epoch)
        (request,) = client.poll_requests(name, epoch, 1, 2.0)
        pki = make_pki(KeyPool({KeyType.P256: 0}), client.kra_certificate)
        key = pki.new_key(request.profile.key_type)
        pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        client.record_intent(name, epoch, request.id, pem.decode())
        issued = router.issue(
            pki.build_csr(request, key), request.profile.template, request.id, time.monotonic() + 10
        )
    router.close()
    return request.id, issued.serial


def test_a_blind_certdb_holds_old_intents_but_not_new_work(
    make_agent: Callable[..., tuple[Agent, StubElector]],  # noqa: F811 - the fixture
    admin: httpx.Client,
    service: Any,
    cfssl_cas: CfsslLab,
    tmp_path: Path,
) -> None:
    epoch = next_epoch(admin)
    tenant = Tenant(admin, prefix=unique("blind"), key_type="p256")
    tenant.create_profile()
    (device,) = tenant.enroll(1)
    orphan_request, orphan_serial = _deposed_leader_leaves_an_orphan(service.url, cfssl_cas, epoch)

    # The new leader's certdb password file holds the wrong password.
    password = tmp_path / "certdb.password"
    password.write_text("wrong\n")
    password.chmod(0o600)
    description = cfssl_cas.describe()
    for spec in description["cas"].values():
        spec["certdb_password_file"] = str(password)
    agent, _ = make_agent(epoch + 1, description=description)
    router = agent.deps.issuer
    turn_until(agent, lambda: agent.state.reconciled_epoch == epoch + 1)

    # The intent waits: not requeued, the orphan untouched, nobody issued anew.
    assert agent.state.intents_waiting == 1
    assert [r["state"] for r in tenant.requests() if r["id"] == orphan_request] != ["pending"]
    assert _unrevoked_by_device(cfssl_cas)[device.id] == [orphan_serial]
    # Loudly: unhealthy at the service, not ready, the reason names the CA and why.
    # The search stopped at the first blind CA; the probe thread asks them all.
    assert agent.snapshot().reconcile_blocked == ("primary",)
    probe = CertDBProbe(router, interval_s=60, on_change=agent.wake)  # type: ignore[arg-type]
    probe.probe_once()
    assert set(agent.snapshot().reconcile_blocked) == set(cfssl_cas.names)
    report = evaluate(agent.health_snapshot(), now=time.monotonic(), max_loop_age=30)
    assert not report.ready
    assert any("cannot reconcile at primary: auth:" in r for r in report.reasons)
    turn_until(agent, lambda: connector_row(admin, agent.name)["health"] == "unhealthy")

    # New requests have no earlier intent: they are served meanwhile.
    others = tenant.enroll(2)
    turn_until(
        agent,
        lambda: (
            sorted(r["state"] for r in tenant.requests() if r["device_id"] != device.id)
            == ["issued", "issued"]
        ),
    )
    assert all(len(_unrevoked_by_device(cfssl_cas)[d.id]) == 1 for d in others)

    # The certdb answers again: the probe notices, the orphan is revoked and the
    # request issued anew, under the new epoch.
    password.write_text(cfssl_cas.certdb_access("primary").reader_password_file.read_text())
    probe.probe_once()
    assert agent.snapshot().reconcile_blocked == ()
    turn_until(agent, lambda: states(tenant) == ["issued"] * 3, timeout=60.0)
    assert agent.state.intents_waiting == 0
    record = cfssl_cas.certdb(
        next(ca for ca in cfssl_cas.names if cfssl_cas.certdb(ca).by_serial(orphan_serial))
    ).by_serial(orphan_serial)
    assert record is not None
    assert record.revoked
    assert record.reason == 4  # superseded
    (row,) = [r for r in tenant.requests() if r["id"] == orphan_request]
    assert _unrevoked_by_device(cfssl_cas)[device.id] == [int(row["serial"])]
    assert int(row["serial"]) != orphan_serial
    report = evaluate(agent.health_snapshot(), now=time.monotonic(), max_loop_age=30)
    assert not [r for r in report.reasons if "reconcile" in r]


def _wait(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("new_leader", ["leading", "deposed", "gone"])
def test_a_sign_request_held_by_a_cut_link_and_released_after_the_takeover_is_revoked(
    make_agent: Callable[..., tuple[Agent, StubElector]],  # noqa: F811 - the fixture
    admin: httpx.Client,
    service: Any,
    cfssl_cas: CfsslLab,
    new_leader: str,
) -> None:
    """The late-request sequence of docs/chaos.md, exactly, with zero orphans at the end.

    The deposed leader's sign request is held by its cut link (a fault proxy
    that holds bytes, as a link dropping packets while TCP retransmits). The
    new leader reconciles: the CA has nothing for that key, so the request is
    issued anew. Then the link heals, the held request reaches the CA and is
    signed: the new leader's late watch finds it and revokes it (superseded).

    ``deposed``: the new leader loses the lease before the link heals (the
    ca-cut drill's next round). It goes on sweeping that key as a standby,
    without a lease.

    ``gone``: the new leader's process ends before the link heals (its watch
    with it). The next leader is told the key at its registration (an intent
    given up on lately) and revokes what turns up.
    """
    epoch = next_epoch(admin)
    tenant = Tenant(admin, prefix=unique("late"), key_type="p256")
    tenant.create_profile()
    (device,) = tenant.enroll(1)
    description = cfssl_cas.describe()
    primary = description["cas"]["primary"]
    url = httpx.URL(primary["url"])
    proxy = FaultProxy((str(url.host), int(url.port or 443))).start()
    old = {**description, "cas": {**description["cas"], "primary": {**primary}}}
    old["cas"]["primary"]["url"] = str(url.copy_with(port=proxy.port))
    router = router_from_description(old, call_timeout_s=20.0)
    late: list[Any] = []
    try:
        # The deposed leader (epoch E): its intent is recorded, its connection to
        # the primary is up, then the link is cut and its sign request is held.
        name = unique("deposed")
        with ServiceClient(service.url) as client:
            client.register(name, epoch)
            (request,) = client.poll_requests(name, epoch, 1, 2.0)
            pki = make_pki(KeyPool({KeyType.P256: 0}), client.kra_certificate)
            key = pki.new_key(request.profile.key_type)
            pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            client.record_intent(name, epoch, request.id, pem.decode())
        csr = pki.build_csr(request, key)
        assert router.probe("primary", timeout=5.0)  # the connection the request will use
        proxy.set(LinkFaults(up=Toxics(blackhole=True)))
        sender = threading.Thread(
            target=lambda: late.append(
                router.issue(csr, request.profile.template, request.id, time.monotonic() + 20)
            ),
            daemon=True,
        )
        sender.start()
        _wait(lambda: proxy.stats.held_bytes > 0, 5.0, "the sign request held by the cut link")

        # The new leader (E+1): nothing at the CA for that key, so the request is
        # issued anew and the old key is watched.
        agent, elector = make_agent(epoch + 1)
        turn_until(agent, lambda: states(tenant) == ["issued"])
        assert agent.state.counts["requeued"] == 1
        assert request.id in {e.request_id for e in agent.executor.late.due()}
        if new_leader == "deposed":
            elector.release("the next round's cut")
            turn_until(agent, lambda: agent.state.last_late_sweep_at is not None)
        if new_leader == "gone":
            elector.release("stopped")
            agent.executor.close()
            agent, _ = make_agent(epoch + 2)
            turn_until(agent, lambda: agent.state.registered_epoch == epoch + 2)
            assert request.id in {e.request_id for e in agent.executor.late.due()}

        # The link heals: the held request is signed, after the takeover.
        proxy.clear()
        sender.join(timeout=10)
        (signed,) = late

        def revoked() -> bool:
            record = cfssl_cas.certdb("primary").by_serial(signed.serial)
            return record is not None and record.revoked

        turn_until(agent, revoked, timeout=60.0)
        assert agent.state.counts["late_orphans_revoked"] >= 1
    finally:
        proxy.stop()
        router.close()
    record = cfssl_cas.certdb("primary").by_serial(signed.serial)
    assert record is not None
    assert record.revoked
    assert record.reason == 4  # superseded
    (row,) = tenant.requests()
    assert _unrevoked_by_device(cfssl_cas)[device.id] == [int(row["serial"])]
    # The drill's checkers attribute the late certificate to its request through the
    # deposed leader's intent (every intent, not only the request's current one).
    certificates = ca_certificates({ca: cfssl_cas.certdb(ca) for ca in cfssl_cas.names})
    db = ServiceDb(service.db_path)
    snapshot = Snapshot(
        delivered=tuple(db.delivered()),
        intents=tuple(db.intents()),
        ca_certificates=tuple(certificates),
    )
    by_request, _ = attribute_certificates(snapshot)
    assert str(signed.serial) in {c.serial for c in by_request[row["id"]]}
    # Only the delivered one stays valid (the CAs are shared with other tests: their
    # certificates are not this test's to judge).
    assert [c.serial for c in by_request[row["id"]] if not c.revoked] == [str(row["serial"])]
