"""Three connector processes against real ZooKeeper (3 nodes), real CFSSL and the real service.

One cluster per module (epochs keep rising across its tests, as the service
has seen them); a fresh fleet of connector processes per test.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos.bench._tenant import Tenant, checkin, report
from chaos.checkers import Snapshot, check_user_scope
from chaos.checkers.state import ServiceDb, ca_certificates
from chaos.launch.cfssl import CfsslLab
from chaos.launch.connector import ConnectorFleet
from chaos.launch.proxy import FaultProxy, LinkFaults, Toxics
from chaos.launch.service import ServiceProcess
from chaos.launch.zookeeper import ZooKeeperEnsemble
from chaos.service.clients import DeviceClient, DeviceCredentials
from tests.fixtures.service import unique

CLUSTER = "agent-it"
SESSION_S = 1.0


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _new_fleet(
    tmp_path: Path, zk: ZooKeeperEnsemble, service: ServiceProcess, cas: dict[str, Any]
) -> ConnectorFleet:
    """Three connectors of this module's cluster, quick to poll and heartbeat."""
    return ConnectorFleet(
        tmp_path / "connectors",
        count=3,
        cluster=CLUSTER,
        zk_hosts=zk.hosts,
        service_url=service.url,
        cas=cas,
        session_timeout=SESSION_S,
        loop={"poll_wait_s": 0.3, "heartbeat_interval_s": 0.5, "keypool_size": 4},
    )


@pytest.fixture
def fleet(
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
) -> Iterator[ConnectorFleet]:
    fleet = _new_fleet(tmp_path, zk_ensemble, service, cfssl_cas.describe())
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop(grace=5)


@pytest.fixture
def tenant(admin: httpx.Client) -> Tenant:
    t = Tenant(admin, prefix=unique("t"), template="user-auth", key_type="p256")
    t.create_profile()
    return t


def wait_issued(
    tenant: Tenant, count: int, timeout: float = 30.0, fleet: ConnectorFleet | None = None
) -> list[dict[str, Any]]:
    def done() -> bool:
        rows = tenant.requests()
        return len(rows) == count and all(r["state"] in ("issued", "delivered") for r in rows)

    try:
        wait_until(done, timeout, f"{count} requests issued")
    except AssertionError as exc:
        stuck = [r for r in tenant.requests() if r["state"] not in ("issued", "delivered")]
        trail = []
        for name in fleet.names if fleet is not None else ():
            trail += [
                f"{name}: {line[:300]}"
                for line in fleet.log_lines(name)
                if any(r["id"] in line for r in stuck) or '"event_id": 50' in line
            ]
        raise AssertionError(f"{exc}\nstuck: {stuck}\n" + "\n".join(trail[-80:])) from None
    return tenant.requests()


def certificates_by_device(lab: CfsslLab) -> dict[str, list[tuple[str, int, bool]]]:
    """device id (subject serialNumber) -> [(ca, serial, revoked)] from every CA's certdb."""
    from cryptography.x509.oid import NameOID

    out: dict[str, list[tuple[str, int, bool]]] = {}
    for ca in lab.names:
        for record in lab.certdb(ca).records():
            attrs = record.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
            for attr in attrs:
                out.setdefault(str(attr.value), []).append((ca, record.serial, record.revoked))
    return out


def assert_one_unrevoked_per_request(lab: CfsslLab, rows: list[dict[str, Any]]) -> int:
    """At most one unrevoked certificate per request, and it is the delivered one.

    Returns how many revoked extra certificates (orphans) the CAs hold for these requests.
    """
    by_device = certificates_by_device(lab)
    orphans = 0
    for row in rows:
        certs = by_device.get(row["device_id"], [])
        unrevoked = [(ca, serial) for ca, serial, revoked in certs if not revoked]
        assert unrevoked == [(row["ca_name"], int(row["serial"]))], (row, certs)
        orphans += sum(1 for _, _, revoked in certs if revoked)
    return orphans


def connectors(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in admin.get("/api/v1/read/connectors").json()}


def openssl_verify(tmp_path: Path, lab: CfsslLab, delivered: Any) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = tmp_path / f"{delivered.serial}.pem"
    chain = tmp_path / f"{delivered.serial}-chain.pem"
    leaf.write_bytes(delivered.certificate.public_bytes(Encoding.PEM))
    chain.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in delivered.chain))
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(lab.root_certificate_path),
            "-untrusted",
            str(chain),
            str(leaf),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def assert_history_traces_serial(
    fleet: ConnectorFleet, zk_hosts: str, service: ServiceProcess, row: dict[str, Any]
) -> None:
    """Issue 17: ``pfxha history --serial``: serial -> connector, epoch (service and the
    leader's log) -> that epoch's leadership in ZooKeeper's history, all the same member.

    Part of the first test below (its fleet has issued already: no fleet of its own).
    """
    from click.testing import CliRunner

    from connector.cli import root

    leader, epoch = fleet.leader()  # type: ignore[misc]
    # The service marks the request issued before its answer reaches the connector,
    # which logs 1003 after it: wait for that line, not for time.
    uploaded = f'"event_id": 1003, "event": "pfx_uploaded", "request_id": "{row["id"]}"'
    wait_until(
        lambda: any(uploaded in line for line in fleet.log_lines(leader)), 10, "event 1003 logged"
    )
    args = ["history", "--hosts", zk_hosts, "--cluster", CLUSTER, "--json"]
    args += ["--serial", hex(int(row["serial"])), "--service", service.url]
    args += ["--log", str(fleet.log_path(leader))]
    result = CliRunner().invoke(root, args)
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)["records"]
    assert {(r["source"].split()[0], r["what"]) for r in records} >= {
        ("service", "uploaded"),
        ("log", "cert_issued"),
        ("log", "pfx_uploaded"),
    }
    for record in records:
        assert (record["connector"], record["epoch"], record["note"]) == (leader, epoch, "")
        assert record["leadership"]["name"] == leader
        assert record["leadership"]["epoch"] == epoch


def test_one_active_devices_get_pfx_that_open_and_chain_to_the_root(
    fleet: ConnectorFleet,
    tenant: Tenant,
    admin: httpx.Client,
    cfssl_cas: CfsslLab,
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    service: ServiceProcess,
) -> None:
    leader = fleet.wait_for_leader()
    devices = tenant.enroll(4)
    rows = wait_issued(tenant, 4)

    # Exactly one connector is active at the service, the ZooKeeper leader; the
    # others heartbeat as standbys.
    wait_until(lambda: len(connectors(admin)) >= 3, 10, "three connectors seen")
    listed = {n: c for n, c in connectors(admin).items() if n in fleet.names}
    assert [n for n, c in listed.items() if c["role"] == "active"] == [leader]
    assert all(c["health"] == "healthy" for c in listed.values())
    assert {r["epoch"] for r in rows} == {fleet.leader()[1]}  # type: ignore[index]
    assert_history_traces_serial(fleet, zk_ensemble.hosts, service, rows[0])

    for device in devices:
        delivered = checkin(admin, device)
        assert len(delivered) == 1
        got = delivered[0]
        assert got.certificate.public_key() == got.key.public_key()
        assert device.id in got.certificate.subject.rfc4514_string()
        openssl_verify(tmp_path, cfssl_cas, got)
        report(admin, device, got.request_id, "installed")
    assert assert_one_unrevoked_per_request(cfssl_cas, rows) == 0


def test_sigterm_hands_the_lease_over_at_once(fleet: ConnectorFleet, tenant: Tenant) -> None:
    leader = fleet.wait_for_leader()
    _, epoch = fleet.leader()  # type: ignore[misc]
    started = time.monotonic()
    fleet.process(leader).signal(signal.SIGTERM)
    successor = fleet.wait_for_leader(exclude=leader, above_epoch=epoch, timeout=10)
    handover = time.monotonic() - started
    assert successor != leader
    # Well under the session timeout: the lease was released, not left to expire.
    assert handover < SESSION_S, handover
    wait_until(lambda: not fleet.running(leader), 10, "the old leader to exit")
    assert fleet.process(leader).returncode() == 0
    tenant.enroll(2)
    wait_issued(tenant, 2)


def _undelivered(lab: CfsslLab, tenant: Tenant) -> dict[tuple[str, int], bool]:
    """Certificates the CAs hold for this tenant's devices that no request carries: revoked?"""
    rows = tenant.requests()
    devices = {r["device_id"] for r in rows}
    uploaded = {(r["ca_name"], int(r["serial"])) for r in rows if r["serial"]}
    found = {}
    for device, certs in certificates_by_device(lab).items():
        if device in devices:
            found |= {(ca, serial): revoked for ca, serial, revoked in certs}
    return {cert: revoked for cert, revoked in found.items() if cert not in uploaded}


@contextlib.contextmanager
def _ca_counter(lab: CfsslLab) -> Iterator[Callable[[], int]]:
    """Certificates the CAs hold, counted over connections kept open for the whole poll."""
    server = lab.certdb_server
    connections = [server.admin(lab.certdb_access(ca).database) for ca in lab.names]
    query = "SELECT count(*) FROM certificates"

    def count() -> int:
        rows = [c.execute(query).fetchone() for c in connections]
        return sum(int(str(row[0])) for row in rows if row is not None)

    try:
        yield count
    finally:
        for connection in connections:
            connection.close()


@contextlib.contextmanager
def _fleet_behind_proxies(
    tmp_path: Path, zk: ZooKeeperEnsemble, lab: CfsslLab, service: ServiceProcess
) -> Iterator[tuple[ConnectorFleet, list[FaultProxy]]]:
    """A fleet whose every CA call goes through a :class:`FaultProxy` the test controls."""
    description = lab.describe()
    proxies: list[FaultProxy] = []
    cas: dict[str, Any] = {}
    try:
        for name, spec in description["cas"].items():
            url = httpx.URL(spec["url"])
            proxy = FaultProxy((url.host, url.port or 80)).start()
            proxies.append(proxy)
            # The CAs speak mutual TLS: through the proxy too (it only moves bytes).
            cas[name] = {**spec, "url": f"{url.scheme}://{proxy.address}"}
        fleet = _new_fleet(tmp_path, zk, service, {**description, "cas": cas})
        fleet.start()
        try:
            yield fleet, proxies
        finally:
            fleet.stop(grace=5)
    finally:
        for proxy in proxies:
            proxy.stop()


def test_leader_killed_after_the_ca_signed_new_leader_revokes_the_orphan(
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
    admin: httpx.Client,
) -> None:
    """The CA signs, its answer never reaches the leader, the leader dies: no orphan survives.

    The proxies let the sign request through and drop the answer, so the leader
    is always caught between the CA call and the upload (no race to win).
    """
    tenant = Tenant(admin, prefix=unique("k"), template="user-auth", key_type="p256")
    tenant.create_profile()
    with _fleet_behind_proxies(tmp_path, zk_ensemble, cfssl_cas, service) as (fleet, proxies):
        leader = fleet.wait_for_leader()
        _, epoch = fleet.leader()  # type: ignore[misc]
        tenant.enroll(1)
        wait_issued(tenant, 1, fleet=fleet)
        with _ca_counter(cfssl_cas) as ca_count:
            before = ca_count()
            for proxy in proxies:
                proxy.set(LinkFaults(down=Toxics(blackhole=True)))
            tenant.enroll(1)
            wait_until(lambda: ca_count() > before, 15, "a CA to sign the new request")
        fleet.process(leader).kill()
        for proxy in proxies:
            proxy.clear()
        assert sum(p.stats.held_bytes for p in proxies) > 0, "no CA answer was held back"

        fleet.wait_for_leader(exclude=leader, above_epoch=epoch, timeout=10)
        rows = wait_issued(tenant, 2, timeout=40, fleet=fleet)
        orphans = _undelivered(cfssl_cas, tenant)
        assert orphans, "the CA's signed certificate should be an orphan nobody delivered"
        # Every certificate the killed leader got but never delivered is revoked ...
        assert all(orphans.values()), orphans
        # ... and each request has exactly one unrevoked certificate: the delivered one.
        assert assert_one_unrevoked_per_request(cfssl_cas, rows) >= len(orphans)
        lines = "\n".join(line for name in fleet.names for line in fleet.log_lines(name))
        assert '"event_id": 3021' in lines


def test_a_lost_ca_answer_leaves_no_orphan_within_one_epoch(
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
    admin: httpx.Client,
) -> None:
    """The CA signs, its answer is lost, the leader lives on: one valid certificate, no re-key.

    The leader either finds the signed certificate and delivers it, or holds the
    request for its own sweep, which revokes what the CA signed before the request
    is issued again: never a second valid certificate, never a takeover needed.
    """
    tenant = Tenant(admin, prefix=unique("l"), template="user-auth", key_type="p256")
    tenant.create_profile()
    with _fleet_behind_proxies(tmp_path, zk_ensemble, cfssl_cas, service) as (fleet, proxies):
        leader = fleet.wait_for_leader()
        _, epoch = fleet.leader()  # type: ignore[misc]
        with _ca_counter(cfssl_cas) as ca_count:
            before = ca_count()
            for proxy in proxies:
                proxy.set(LinkFaults(down=Toxics(blackhole=True)))
            tenant.enroll(1)
            wait_until(lambda: ca_count() > before, 15, "a CA to sign the request")
        # Held until the leader gave up on the answer (its CA call timed out).
        wait_until(
            lambda: any('"event_id": 1020' in line for line in fleet.log_lines(leader)),
            15,
            "the leader to give up on the CA's answer",
        )
        for proxy in proxies:
            proxy.clear()
        rows = wait_issued(tenant, 1, timeout=60, fleet=fleet)
        assert fleet.leader() == (leader, epoch), "the lost answer cost a leadership change"
        assert_one_unrevoked_per_request(cfssl_cas, rows)  # raises on a second valid one
        assert all(_undelivered(cfssl_cas, tenant).values()), "an unrevoked orphan survived"


def test_paused_leader_past_its_session_is_fenced_and_delivers_nothing(
    fleet: ConnectorFleet, tenant: Tenant, admin: httpx.Client, cfssl_cas: CfsslLab
) -> None:
    leader = fleet.wait_for_leader()
    _, old_epoch = fleet.leader()  # type: ignore[misc]
    tenant.enroll(3)
    wait_issued(tenant, 3)
    process = fleet.process(leader)

    process.pause()
    tenant.enroll(3)  # work arrives while the leader is frozen
    successor = fleet.wait_for_leader(exclude=leader, above_epoch=old_epoch, timeout=10)
    _, new_epoch = fleet.leader()  # type: ignore[misc]
    rows = wait_issued(tenant, 6)
    by_epoch_before = sorted(r["epoch"] for r in rows)
    process.resume()

    # The zombie wakes up: its lease is stale (monotonic clock) and the service
    # refuses its epoch, so it steps down without delivering anything.
    wait_until(
        lambda: (
            connectors(admin)[leader]["role"] == "standby"
            and any(
                '"event_id": 5206' in line or '"event_id": 5222' in line
                for line in fleet.log_lines(leader)
            )
        ),
        15,
        "the paused ex-leader to notice and stand by",
    )
    tenant.enroll(2)
    rows = wait_issued(tenant, 8)
    assert sorted(r["epoch"] for r in rows[:6]) == by_epoch_before
    assert {r["epoch"] for r in rows[6:]} == {new_epoch}
    assert all(r["epoch"] != old_epoch for r in rows[3:])
    assert fleet.leader() == (successor, new_epoch)
    assert_one_unrevoked_per_request(cfssl_cas, rows)
    stale = admin.get("/api/v1/read/stale-rejections").json()
    assert all(r["epoch"] < new_epoch for r in stale if r["name"] == leader)


def _user_scoped_user(admin: httpx.Client, service: ServiceProcess, devices: int) -> UserWorld:
    """A user-scoped S/MIME profile, a user targeted by it and ``devices`` of theirs."""
    prefix = unique("us")
    world = UserWorld(f"{prefix}-smime", f"{prefix}-user", {})
    for path, body in (
        ("profiles", {"id": world.profile, "scope": "user", "template": "smime",
                      "key_type": "p256", "subject_template": "CN={{UserName}}",
                      "san_templates": ["email={{EmailAddress}}"]}),
        ("users", {"id": world.user, "name": world.user, "upn": f"{world.user}@lab",
                   "email": f"{world.user}@lab"}),
        ("groups", {"id": f"{prefix}-g", "name": prefix}),
        (f"groups/{prefix}-g/members", {"user_id": world.user}),
        ("assignments", {"id": f"{prefix}-a", "profile_id": world.profile,
                         "group_id": f"{prefix}-g"}),
    ):  # fmt: skip
        admin.post(f"/api/v1/admin/{path}", json=body).raise_for_status()
    for n in range(devices):
        made = admin.post(
            "/api/v1/admin/devices", json={"id": f"{world.user}-d{n}", "user_id": world.user}
        ).raise_for_status()
        body = made.json()
        world.devices[body["id"]] = DeviceClient(
            service.url,
            DeviceCredentials(
                body["id"], body["management_certificate_pem"], body["management_key_pem"]
            ),
        )
    return world


@dataclass
class UserWorld:
    profile: str
    user: str
    devices: dict[str, DeviceClient]

    def requests(self, admin: httpx.Client) -> list[dict[str, Any]]:
        rows = admin.get("/api/v1/read/requests").json()
        return [r for r in rows if r["user_id"] == self.user]


def test_takeover_mid_rollover_of_a_user_certificate_leaves_one_on_every_device(
    tmp_path: Path,
    zk_ensemble: ZooKeeperEnsemble,
    cfssl_cas: CfsslLab,
    service: ServiceProcess,
    admin: httpx.Client,
) -> None:
    """A lost device rolls the user's shared certificate over; the CA signs the new one,
    its answer is dropped and the leader dies: the next leader revokes that orphan and
    issues once more. One unrevoked certificate for the user at the CA, the same serial
    on both remaining devices, the old key decrypt-only on each: the checkers agree."""
    world = _user_scoped_user(admin, service, devices=3)
    with _fleet_behind_proxies(tmp_path, zk_ensemble, cfssl_cas, service) as (fleet, proxies):
        leader = fleet.wait_for_leader()
        _, epoch = fleet.leader()  # type: ignore[misc]
        wait_until(
            lambda: [r["state"] for r in world.requests(admin)] == ["issued"], 30, "issuance"
        )
        for device in world.devices.values():
            device.sync()
        (first,) = world.requests(admin)
        lost, *rest = world.devices
        with _ca_counter(cfssl_cas) as ca_count:
            before = ca_count()
            for proxy in proxies:
                proxy.set(LinkFaults(down=Toxics(blackhole=True)))
            admin.post(
                "/api/v1/admin/actions/retire-admin", json={"device_id": lost}
            ).raise_for_status()
            wait_until(lambda: ca_count() > before, 15, "a CA to sign the rollover")
        fleet.process(leader).kill()
        for proxy in proxies:
            proxy.clear()
        assert sum(p.stats.held_bytes for p in proxies) > 0, "no CA answer was held back"
        fleet.wait_for_leader(exclude=leader, above_epoch=epoch, timeout=10)

        def settled() -> bool:
            rows = world.requests(admin)
            return [r["state"] for r in rows][-1:] == ["issued"] and len(rows) == 2

        wait_until(settled, 40, "the rollover issued by the new leader")
        wait_until(
            lambda: not admin.get("/api/v1/read/revocations", params={"state": "pending"}).json(),
            20,
            "the revocations done",
        )
    _, rollover = world.requests(admin)
    assert (rollover["kind"], rollover["replaces"]) == ("rollover", first["id"])
    for device_id in rest:
        world.devices[device_id].sync()
        held = world.devices[device_id]
        assert held.store[world.profile].serial == int(rollover["serial"])
        assert set(held.history) == {int(first["serial"])}
    world.devices[lost].sync()  # collects its deletion
    ca = ca_certificates({name: cfssl_cas.certdb(name) for name in cfssl_cas.names})
    mine = [c for c in ca if c.device == world.user]
    assert len(mine) == 3  # the first, the orphan of the dead leader, the rollover
    assert [(c.ca, c.serial) for c in mine if not c.revoked] == [
        (rollover["ca_name"], rollover["serial"])
    ]
    users = ServiceDb(service.db_path).user_scope()
    assert check_user_scope(Snapshot(ca_certificates=tuple(ca), users=users)) == []
    for device in world.devices.values():
        device.close()


def test_pause_leaves_a_killed_leader_unreplaced_until_resume(
    fleet: ConnectorFleet, zk_ensemble: ZooKeeperEnsemble, tenant: Tenant
) -> None:
    """Issue 17's maintenance mode on real connector processes: `pfxha pause`, kill -9
    of the leader, nobody takes over for 10 s and `status` says why; `resume` heals."""
    from click.testing import CliRunner

    from connector.cli import root

    base = ["--hosts", zk_ensemble.hosts, "--cluster", CLUSTER]

    def cli(*args: str) -> str:
        result = CliRunner().invoke(root, [*args, *base], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    leader = fleet.wait_for_leader()
    _, epoch = fleet.leader()  # type: ignore[misc]
    assert "paused" in cli("pause", "--reason", "CA certificate renewal")
    fleet.kill(leader)  # SIGKILL: the fast path would replace it within milliseconds
    wait_until(lambda: fleet.leader() is None, 10 * SESSION_S, "the dead leader's lease to go")
    unreplaced_until = time.monotonic() + 10.0
    while time.monotonic() < unreplaced_until:
        assert fleet.leader() is None, "a standby took over while the cluster was paused"
        time.sleep(0.2)  # the sampling period of the observation, not a synchronisation
    status = json.loads(cli("status", "--json"))
    assert status["leader"] is None
    assert status["paused"]["reason"] == "CA certificate renewal"
    assert "paused" in cli("status")

    assert "resumed" in cli("resume")
    successor = fleet.wait_for_leader(exclude=leader, above_epoch=epoch, timeout=10)
    assert successor != leader
    tenant.enroll(1)
    wait_issued(tenant, 1, fleet=fleet)
