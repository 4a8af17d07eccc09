"""A takeover's first reads ride on the registration: stale intents and a first batch.

Over a WAN each service call between "elected" and the first certificate is a round
trip; the registration's answer carries what the first sweep and the first poll read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from connector.agent import batches as batches_module
from connector.agent.decide import Action, Decision
from connector.agent.executor import FIRST_BATCH, AgentState, Executor, ExecutorDeps
from connector.agent.issuance import IssueContext, Outcome
from connector.agent.ports import Pki
from connector.service_client import (
    CertificateRequest,
    Intent,
    Polled,
    ProfileSpec,
    Registration,
    Superseded,
    Uncertain,
)

EPOCH = 7
PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\n"
    "q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n"
    "-----END PUBLIC KEY-----\n"
)


class FakeLease:
    def __init__(self, epoch: int | None = EPOCH) -> None:
        self.epoch = epoch

    def fresh_epoch(self) -> int | None:
        return self.epoch

    def release(self, reason: str) -> None:
        pass

    def leave(self, reason: str) -> None:
        pass


def _request(n: int) -> CertificateRequest:
    profile = ProfileSpec("p", "p256", "t", "CN={{UserName}}", (), 30)
    return CertificateRequest(f"req-{n}", f"dev-{n}", profile)


class FakeService:
    def __init__(self, registration: Registration) -> None:
        self.registration = registration
        self.registered: list[tuple[int, int]] = []
        self.listed = 0
        self.warmed: list[int] = []
        self.polled: list[CertificateRequest] = []
        self.failed: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.all_failed = threading.Event()

    def register(self, name: str, epoch: int, *, max_items: int = 0, **_: Any) -> Registration:
        self.registered.append((epoch, max_items))
        return self.registration

    def heartbeat(self, name: str, epoch: int, health: str, details: Any, **_: Any) -> str:
        return "standby" if epoch == 0 else "active"

    def keep_warm(self, connections: int, *, timeout: float | None = None) -> bool:
        self.warmed.append(connections)
        return True

    def poll_work(self, name: str, epoch: int, max_items: int, wait_s: float, **_: Any) -> Polled:
        polled, self.polled = self.polled, []
        return Polled(polled)

    def inflight_intents(self, name: str, epoch: int) -> list[Intent]:
        self.listed += 1
        return []

    def fail_request(
        self, name: str, epoch: int, request_id: str, reason: str, retryable: bool
    ) -> None:
        with self.lock:
            self.failed.append((request_id, reason))
            if len(self.failed) == 3:
                self.all_failed.set()


class FakeIssuer:
    def issue(self, csr: Any, template: str, request_id: str, deadline: float) -> Any:
        raise AssertionError("not called")

    def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
        raise AssertionError("not called")

    def find(self, public_key: Any) -> Sequence[Any]:
        return []

    def find_many(self, public_keys: Sequence[Any]) -> Sequence[Sequence[Any]]:
        return [[] for _ in public_keys]

    def ca_states(self) -> Mapping[str, str]:
        return {"primary": "closed"}


def _executor(
    service: FakeService, *, workers: int = 8, lease: FakeLease | None = None
) -> Executor:
    def refuse(*_: Any) -> Any:
        # A profile the connector refuses: the request is failed at once, which
        # shows it reached an issuing thread without a CA behind the test.
        raise ValueError("refused in this test")

    deps = ExecutorDeps(
        name="c1",
        service=service,
        issuer=FakeIssuer(),
        pki=Pki(new_key=refuse, build_csr=refuse, pack_pfx=refuse, seal=refuse),
        lease=lease or FakeLease(),
        ca_errors=(OSError,),
        is_retryable=lambda exc: True,
        workers=workers,
    )
    return Executor(deps, AgentState())


def test_the_registration_brings_the_first_batch_and_the_first_sweeps_intents() -> None:
    stale = Intent("req-old", EPOCH - 1, PEM, "spki", cancelled=False)
    service = FakeService(Registration(intents=[stale], requests=[_request(1), _request(2)]))
    executor = _executor(service)
    try:
        executor.execute(Decision(Action.REGISTER, "test", epoch=EPOCH))
        # A small first batch delivers sooner: FIRST_BATCH, not a full poll of 2 * 8.
        assert service.registered == [(EPOCH, FIRST_BATCH)]
        assert executor.state.registered_epoch == EPOCH
        # The sweep settles the listed intent without asking for the list again.
        executor.execute(Decision(Action.RECONCILE, "test", epoch=EPOCH))
        assert service.listed == 0
        assert executor.state.reconciled_epoch == EPOCH
        assert service.all_failed.wait(10)
        reasons = dict(service.failed)
        # Both polled requests reached an issuing thread (refused by the fake Pki)...
        assert "refused in this test" in reasons["req-1"]
        assert "refused in this test" in reasons["req-2"]
        # ...and the stale intent was handed back by the sweep.
        assert reasons["req-old"].startswith(f"reconciled after epoch {EPOCH - 1}")
        # A later sweep asks the service again: the listed intents served one sweep.
        executor.execute(Decision(Action.RECONCILE, "test", epoch=EPOCH))
        assert service.listed == 1
    finally:
        executor.close()


def test_a_registration_without_pending_work_starts_no_batch() -> None:
    service = FakeService(Registration())
    executor = _executor(service)
    try:
        executor.execute(Decision(Action.REGISTER, "test", epoch=EPOCH))
        executor.execute(Decision(Action.RECONCILE, "test", epoch=EPOCH))
        assert service.failed == []
        assert service.listed == 0
        assert executor.issue_capacity == 2 * 8  # nothing in hand: the whole key stage
    finally:
        executor.close()


def test_a_standby_keeps_connections_warm_with_its_heartbeat_and_a_leader_does_not() -> None:
    service = FakeService(Registration())
    lease = FakeLease(epoch=None)
    executor = _executor(service, lease=lease)
    try:
        executor.execute(Decision(Action.HEARTBEAT, "test", epoch=None))
        assert service.warmed == [4]
        executor.execute(Decision(Action.HEARTBEAT, "test", epoch=EPOCH, as_leader=True))
        assert service.warmed == [4]
        # Elected while a standby's heartbeat was out: the registration comes next and
        # needs a warm connection, so no probe round takes them all now.
        lease.epoch = EPOCH
        executor.execute(Decision(Action.HEARTBEAT, "test", epoch=None))
        assert service.warmed == [4]
    finally:
        executor.close()


def test_the_first_batch_uploads_one_by_one_and_later_batches_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A takeover's first certificate is not held back by the batch's slowest member."""
    seen: dict[str, tuple[bool, bool]] = {}
    lock = threading.Lock()
    all_seen = threading.Event()

    def record(ctx: IssueContext, request: Any) -> Outcome:
        with lock:
            seen[request.id] = (ctx.intents is not None, ctx.results is not None)
            if len(seen) == 4:
                all_seen.set()
        return Outcome.DELIVERED

    monkeypatch.setattr(batches_module, "issue_one", record)
    service = FakeService(Registration(requests=[_request(1), _request(2)]))
    service.polled = [_request(3), _request(4)]
    executor = _executor(service)
    try:
        executor.execute(Decision(Action.REGISTER, "test", epoch=EPOCH))
        executor.execute(Decision(Action.ISSUE, "test", epoch=EPOCH))
        assert all_seen.wait(10)
        # (intents shared, results shared): the intents in both, the results in the later
        assert seen == {
            "req-1": (True, False),
            "req-2": (True, False),
            "req-3": (True, True),
            "req-4": (True, True),
        }
    finally:
        executor.close()


def test_the_first_batch_is_never_more_than_the_hand_can_take() -> None:
    service = FakeService(Registration(intents=[], requests=[]))
    executor = _executor(service, workers=1)  # a key stage of two
    try:
        executor.execute(Decision(Action.REGISTER, "test", epoch=EPOCH))
        assert service.registered == [(EPOCH, 2)]
    finally:
        executor.close()


def test_the_registration_hands_over_the_keys_to_watch_for_late_certificates() -> None:
    """Keys given up on, and keys delivered while another CA may still sign them (the
    delivered certificate kept): the new leader watches both, for what is left of their
    window, whoever watched them before."""
    given_up = Superseded("req-1", EPOCH - 1, PEM, age_s=4.0)
    delivered = Uncertain("req-2", EPOCH - 1, PEM, age_s=2.0, ca_name="secondary", serial=42)
    service = FakeService(Registration(superseded=[given_up], uncertain=[delivered]))
    executor = _executor(service)
    try:
        executor.execute(Decision(Action.REGISTER, "test", epoch=EPOCH))
        watched = {w.request_id: w for w in executor.late.due()}
        assert sorted(watched) == ["req-1", "req-2"]
        assert watched["req-1"].keep is None
        assert watched["req-2"].keep == ("secondary", 42)
        assert watched["req-2"].epoch == EPOCH - 1
        # The later intent has the longer window left.
        assert watched["req-2"].until > watched["req-1"].until
    finally:
        executor.close()


def test_a_reconcile_turn_defers_revocations_at_a_ca_the_reach_probes_find_failing() -> None:
    """A hung CA answers each call only at its deadline, and the turn holds the loop:
    its orphans wait, uncalled, until a probe reaches the CA again."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Held:
        serial: int
        ca_name: str
        revoked: bool = False

    class HoldingIssuer(FakeIssuer):
        def __init__(self) -> None:
            self.revoked: list[tuple[int, str]] = []

        def find_many(self, public_keys: Sequence[Any]) -> Sequence[Sequence[Any]]:
            return [[Held(11, "primary")] for _ in public_keys]

        def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
            self.revoked.append((serial, issuer_ca))

    failing = {"primary"}
    issuer = HoldingIssuer()
    stale = Intent("req-old", EPOCH - 1, PEM, "spki", cancelled=False)
    service = FakeService(Registration(intents=[stale]))
    deps = ExecutorDeps(
        name="c1",
        service=service,
        issuer=issuer,
        pki=Pki(new_key=None, build_csr=None, pack_pfx=None, seal=None),  # type: ignore[arg-type]
        lease=FakeLease(),
        ca_errors=(OSError,),
        is_retryable=lambda exc: True,
        ca_failing=lambda ca: ca in failing,
    )
    executor = Executor(deps, AgentState())
    try:
        executor.execute(Decision(Action.REGISTER, "test", epoch=EPOCH))
        executor.execute(Decision(Action.RECONCILE, "test", epoch=EPOCH))
        # Not called, and the request stays in flight while its orphan is valid.
        assert issuer.revoked == []
        assert service.failed == []
        assert executor.state.orphans_pending
        # A probe reached the CA again: the next turn revokes and hands the request back.
        failing.clear()
        service.registration = Registration(intents=[stale])
        service.inflight_intents = lambda name, epoch: [stale]  # type: ignore[method-assign]
        executor.execute(Decision(Action.RECONCILE, "test", epoch=EPOCH))
        assert issuer.revoked == [(11, "primary")]
        assert [request for request, _ in service.failed] == ["req-old"]
    finally:
        executor.close()
