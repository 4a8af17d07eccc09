"""Keys given up on stay watched for their window; what turns up late is revoked."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connector.agent.late import LateReport, LateSweeps, LateWatch, Watched, plan_late, sweep_late
from connector.agent.ports import Fence, LeaseLost
from connector.agent.reconcile import OrphanRevocation, revoke_orphans
from connector.ca import CAUnavailableError, is_retryable


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lease:
    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch

    def fresh_epoch(self) -> int | None:
        return self.epoch

    def release(self, reason: str) -> None: ...

    def leave(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Found:
    serial: int
    ca_name: str
    status: str = "good"

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"


@dataclass
class CAs:
    """What the CAs hold per public key PEM, and what was revoked (an in-memory issuer)."""

    held: dict[str, list[Found]] = field(default_factory=dict)
    blind: bool = False
    refuse_revoke: bool = False
    revoked: list[tuple[int, str, str]] = field(default_factory=list)

    def find(self, public_key: Any) -> list[Found]:
        if self.blind:
            raise CAUnavailableError("certdb away", ca_name="primary")
        pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        return list(self.held.get(pem, []))

    def find_many(self, public_keys: Sequence[Any]) -> list[list[Found]]:
        return [self.find(key) for key in public_keys]

    def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
        if self.refuse_revoke:
            raise CAUnavailableError("down", ca_name=issuer_ca)
        self.revoked.append((serial, issuer_ca, reason))
        for pem, certs in self.held.items():
            self.held[pem] = [
                Found(c.serial, c.ca_name, "revoked") if c.serial == serial else c for c in certs
            ]


def _sweep(watch: LateWatch, cas: CAs, epoch: int | None = 9) -> Any:
    fence = Fence(Lease(epoch))  # type: ignore[arg-type]
    fence.arm(9)
    return sweep_late(
        watch,
        cas,  # type: ignore[arg-type]
        fence,
        name="c1",
        deadline=lambda: 0.0,
        is_retryable=is_retryable,
    )


def test_a_key_is_watched_for_its_window_then_forgotten() -> None:
    clock = Clock()
    watch = LateWatch(5.0, clock)
    watch.add("r1", "pem-1", epoch=6)
    clock.now += 4.9
    assert [e.request_id for e in watch.due()] == ["r1"]
    assert len(watch) == 1
    clock.now += 0.2
    assert watch.due() == []
    assert len(watch) == 0


def test_adding_a_key_again_restarts_its_window_and_window_zero_watches_nothing() -> None:
    clock = Clock()
    watch = LateWatch(5.0, clock)
    watch.add("r1", "pem-1", epoch=6)
    clock.now += 4.0
    watch.add("r1", "pem-1", epoch=6)
    clock.now += 4.0
    assert len(watch) == 1
    off = LateWatch(0.0, clock)
    off.add("r1", "pem-1", epoch=6)
    assert len(off) == 0
    with pytest.raises(ValueError, match="window_s"):
        LateWatch(-1.0)


def test_plan_late_revokes_every_unrevoked_certificate_for_the_key() -> None:
    entry = Watched("r1", "pem", 6, until=1.0)
    found = [Found(1, "primary"), Found(2, "secondary", "revoked"), Found(3, "secondary")]
    assert [(o.serial, o.ca_name, o.intent_epoch) for o in plan_late(entry, found)] == [
        (1, "primary", 6),
        (3, "secondary", 6),
    ]
    assert plan_late(entry, []) == []


def test_a_late_certificate_is_revoked_and_the_key_stays_watched() -> None:
    pem = _pem()
    watch = LateWatch(30.0, Clock())
    watch.add("r1", pem, epoch=6)
    cas = CAs()
    report = _sweep(watch, cas)
    assert (report.searched, report.revoked, cas.revoked) == (1, [], [])

    cas.held[pem] = [Found(11, "primary")]  # the held sign request arrived
    report = _sweep(watch, cas)
    assert [(o.request_id, o.serial) for o in report.revoked] == [("r1", 11)]
    assert cas.revoked == [(11, "primary", "superseded")]
    # A retry of the same request may arrive later still.
    cas.held[pem].append(Found(12, "secondary"))
    report = _sweep(watch, cas)
    assert [o.serial for o in report.revoked] == [12]
    assert len(watch) == 1


def test_a_delivered_key_is_watched_with_its_certificate_kept() -> None:
    """Delivered from the secondary after the primary lost its answer: the primary's
    certificate, recorded after the delivery's own search, is revoked when it turns
    up; the delivered one never is."""
    pem = _pem()
    watch = LateWatch(30.0, Clock())
    watch.add("r1", pem, epoch=6, keep=("secondary", 21))
    cas = CAs(held={pem: [Found(21, "secondary")]})
    report = _sweep(watch, cas)
    assert (report.revoked, cas.revoked) == ([], [])

    cas.held[pem].append(Found(20, "primary"))  # the lost answer's certificate, late
    report = _sweep(watch, cas)
    assert [(o.serial, o.ca_name) for o in report.revoked] == [(20, "primary")]
    assert cas.revoked == [(20, "primary", "superseded")]


def test_a_blind_search_or_a_refused_revocation_is_tried_again_next_sweep() -> None:
    pem = _pem()
    watch = LateWatch(30.0, Clock())
    watch.add("r1", pem, epoch=6)
    cas = CAs(held={pem: [Found(11, "primary")]}, blind=True)
    assert _sweep(watch, cas).blind == 1
    cas.blind, cas.refuse_revoke = False, True
    assert [o.serial for o in _sweep(watch, cas).deferred] == [11]
    cas.refuse_revoke = False
    assert [o.serial for o in _sweep(watch, cas).revoked] == [11]


def test_without_a_fresh_lease_nothing_is_revoked() -> None:
    pem = _pem()
    watch = LateWatch(30.0, Clock())
    watch.add("r1", pem, epoch=6)
    cas = CAs(held={pem: [Found(11, "primary")]})
    with pytest.raises(LeaseLost):
        _sweep(watch, cas, epoch=None)
    assert cas.revoked == []
    assert len(watch) == 1


class HeldCAs(CAs):
    """CAs whose searches wait for ``go``: a sweep that is still at work."""

    def __init__(self, held: dict[str, list[Found]]) -> None:
        super().__init__(held=held)
        self.go = threading.Event()
        self.searching = threading.Event()

    def find_many(self, public_keys: Sequence[Any]) -> list[list[Found]]:
        self.searching.set()
        assert self.go.wait(10), "the test never let the search go"
        return super().find_many(public_keys)


def _sweeps(watch: LateWatch, cas: CAs, reports: list[LateReport]) -> LateSweeps:
    return LateSweeps(
        watch,
        cas,  # type: ignore[arg-type]
        name="c1",
        deadline=lambda: 0.0,
        is_retryable=is_retryable,
        on_report=reports.append,
    )


def test_a_standby_sweeps_without_a_lease_in_the_background_one_sweep_at_a_time() -> None:
    pem = _pem()
    watch = LateWatch(30.0, Clock())
    watch.add("r1", pem, epoch=6)
    cas = HeldCAs({pem: [Found(11, "primary")]})
    reports: list[LateReport] = []
    sweeps = _sweeps(watch, cas, reports)
    try:
        assert sweeps.in_background()
        assert cas.searching.wait(10)
        # One sweep at a time: neither another standby sweep nor a leader's.
        assert not sweeps.in_background()
        assert sweeps.now(Fence(Lease(9))) is None  # type: ignore[arg-type]
        cas.go.set()
    finally:
        sweeps.close()
    (report,) = reports
    assert [(o.request_id, o.serial) for o in report.revoked] == [("r1", 11)]
    assert cas.revoked == [(11, "primary", "superseded")]
    assert len(watch) == 1


def test_a_leaders_sweep_stays_fenced() -> None:
    pem = _pem()
    watch = LateWatch(30.0, Clock())
    watch.add("r1", pem, epoch=6)
    cas = CAs(held={pem: [Found(11, "primary")]})
    reports: list[LateReport] = []
    sweeps = _sweeps(watch, cas, reports)
    try:
        with pytest.raises(LeaseLost):
            sweeps.now(Fence(Lease(None)))  # type: ignore[arg-type]
        assert cas.revoked == []
        fence = Fence(Lease(9))  # type: ignore[arg-type]
        fence.arm(9)
        report = sweeps.now(fence)
    finally:
        sweeps.close()
    assert report is not None
    assert [o.serial for o in report.revoked] == [11]
    assert reports == [report]


def test_only_late_certificates_are_revoked_without_a_lease() -> None:
    orphan = OrphanRevocation("r1", 6, 11, "primary")
    cas = CAs()
    with pytest.raises(ValueError, match="without a lease"):
        revoke_orphans(cas, None, "c1", [orphan], lambda: 0.0, is_retryable)  # type: ignore[arg-type]
    assert cas.revoked == []


def test_orphans_at_a_ca_that_failed_in_the_pass_are_deferred_without_a_call() -> None:
    class Counting(CAs):
        calls: int = 0

        def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
            self.calls += 1
            if issuer_ca == "primary":
                raise CAUnavailableError("no answer", ca_name=issuer_ca, ambiguous=True)
            super().revoke(serial, issuer_ca, reason, deadline)

    cas = Counting()
    fence = Fence(Lease(9))  # type: ignore[arg-type]
    fence.arm(9)
    orphans = [
        OrphanRevocation("r1", 6, 11, "primary"),
        OrphanRevocation("r2", 6, 12, "primary"),
        OrphanRevocation("r3", 6, 13, "secondary"),
    ]
    down: set[str] = set()
    revoked, deferred = revoke_orphans(
        cas,  # type: ignore[arg-type]
        fence,
        "c1",
        orphans,
        lambda: 0.0,
        is_retryable,
        down=down,
    )
    # One call to the failing CA (a hung one answers each only at its deadline).
    assert cas.calls == 2
    assert [o.serial for o in revoked] == [13]
    assert [o.serial for o in deferred] == [11, 12]
    assert down == {"primary"}
    # Later in the same pass (another step shares ``down``): deferred, not called.
    again, later = revoke_orphans(
        cas,  # type: ignore[arg-type]
        fence,
        "c1",
        [OrphanRevocation("r4", 6, 14, "primary")],
        lambda: 0.0,
        is_retryable,
        down=down,
    )
    assert (again, [o.serial for o in later], cas.calls) == ([], [14], 2)
