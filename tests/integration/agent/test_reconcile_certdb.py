"""Reconciliation is never silently off: a blind certdb holds old intents, not new work.

A deposed leader (epoch E) recorded an intent and got a certificate from the
CA, then died before uploading it: an orphan. The next leader (E+1) reads
the CAs' certdbs over PostgreSQL as the read-only role, but its password is
wrong. It must not issue that request anew while the orphan may be valid:
the intent stays in flight, the connector says it is unhealthy and not
ready, and fresh requests are still served. Once the certdb answers, the
orphan is revoked (superseded) and the request issued anew: exactly one
unrevoked certificate per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from chaos.bench._tenant import Tenant
from chaos.launch.cfssl import CfsslLab
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
    turn_until(agent, lambda: states(tenant) == ["issued"] * 3, turns=400)
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
