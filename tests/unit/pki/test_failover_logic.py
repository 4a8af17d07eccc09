"""Breakers, deadline-bounded retry policies and the router, with a fake clock and fake CAs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from connector.ca import (
    CAAuthError,
    CACircuitOpenError,
    CAElectingError,
    CANotFoundError,
    CARequestRejectedError,
    CARouter,
    CAUnavailableError,
    CertStatus,
    CircuitBreaker,
    IssuedCertificate,
    NoCAAvailableError,
    RetryPolicy,
)
from connector.pki import KeyType, build_csr, generate_key
from tests.unit.pki._ca import TestCA, make_intermediate, make_root


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeCA:
    """An IssuingCA that signs locally, or fails the way it is told to."""

    name: str
    ca: TestCA
    clock: FakeClock
    fail: Exception | None = None
    hold_lost_answers: bool = False  # True: searched through its own API (OpenBao-like)
    call_cost: float = 0.01
    calls: list[str] = field(default_factory=list)
    revoked: set[int] = field(default_factory=set)
    issued: list[IssuedCertificate] = field(default_factory=list)

    @property
    def certificate(self) -> x509.Certificate:
        return self.ca.certificate

    def _call(self, what: str, timeout: float | None) -> None:
        self.calls.append(what)
        self.clock.now += min(self.call_cost, timeout or self.call_cost)
        if self.fail is not None:
            raise self.fail

    def issue(self, csr, template, request_id, *, timeout=None):  # type: ignore[no-untyped-def]
        self._call(f"issue {request_id}", timeout)
        cert = self.ca.sign(csr.subject, csr.public_key())
        issued = IssuedCertificate.of(cert, [self.ca.certificate], self.name)
        self.issued.append(issued)
        return issued

    def revoke(self, serial: int, reason: str, *, timeout: float | None = None) -> None:
        self._call(f"revoke {serial}", timeout)
        if not any(i.serial == serial for i in self.issued):
            raise CANotFoundError("no such serial", ca_name=self.name)
        self.revoked.add(serial)

    def status(self, serial: int) -> CertStatus:
        return CertStatus.REVOKED if serial in self.revoked else CertStatus.GOOD

    def crl(self, *, timeout: float | None = None) -> x509.CertificateRevocationList:
        raise NotImplementedError

    def find(self, public_key: PublicKeyTypes) -> list[IssuedCertificate]:
        return [i for i in self.issued if i.certificate.public_key() == public_key]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def roots() -> tuple[TestCA, TestCA]:
    root = make_root()
    return make_intermediate(root, "CA one"), make_intermediate(root, "CA two")


def _router(  # type: ignore[no-untyped-def]
    clock: FakeClock, roots: tuple[TestCA, TestCA], *, hold_lost: bool = False, **kw: object
):
    one = FakeCA("one", roots[0], clock, hold_lost_answers=hold_lost)
    two = FakeCA("two", roots[1], clock)
    router = CARouter(
        {"one": one, "two": two},
        {"t": ["one", "two"], "only-one": ["one"]},
        clock=clock,
        sleep=clock.sleep,
        **kw,  # type: ignore[arg-type]
    )
    return router, one, two


def _csr():  # type: ignore[no-untyped-def]
    key = generate_key(KeyType.P256)
    return build_csr(key, "CN=x", [], {"DeviceId": "d"}), key


# -- breaker ---------------------------------------------------------------------------


def test_breaker_opens_after_threshold_half_opens_after_reset_and_closes_on_success(
    clock: FakeClock,
) -> None:
    seen: list[tuple[str, str]] = []
    b = CircuitBreaker(
        "ca",
        failure_threshold=2,
        reset_timeout=5,
        clock=clock,
        on_change=lambda _n, o, n: seen.append((o, n)),
    )
    b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    assert b.state == "open"
    assert not b.allow()
    assert b.retry_after() == 5
    clock.now += 5
    assert b.state == "half_open"
    assert b.allow()
    assert not b.allow()  # one probe at a time
    b.record_success()
    assert b.state == "closed"
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_reopens_the_breaker(clock: FakeClock) -> None:
    b = CircuitBreaker("ca", failure_threshold=3, reset_timeout=1, clock=clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 1
    assert b.allow()
    b.record_failure()
    assert b.state == "open"


def test_breaker_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout"):
        CircuitBreaker("x", reset_timeout=0)


# -- retry policies --------------------------------------------------------------------


def test_retry_policy_never_sleeps_past_the_deadline(clock: FakeClock) -> None:
    policy = RetryPolicy("t", initial_wait_s=0.1, max_wait_s=2.0)
    deadline = clock.now + 3.0
    attempts = []

    def down() -> None:
        attempts.append(clock.now)
        clock.now += 0.05
        raise CAUnavailableError("down")

    with pytest.raises(CAUnavailableError):
        policy.retrying(deadline, clock=clock, sleep=clock.sleep)(down)
    assert clock.now <= deadline
    assert len(attempts) >= 4
    assert 0.1 <= clock.sleeps[0] <= 0.12  # initial wait plus at most 20 % jitter
    assert clock.sleeps[1] > clock.sleeps[0]  # exponential back-off
    assert max(clock.sleeps) <= 2.0 * 1.2


def test_an_electing_cluster_is_asked_again_soon_not_after_a_grown_back_off(
    clock: FakeClock,
) -> None:
    policy = RetryPolicy("t", initial_wait_s=0.1, max_wait_s=1.0, electing_wait_s=0.1)
    errors = [CAUnavailableError("down")] * 5 + [CAElectingError("no active node")] * 3

    def failing() -> None:
        clock.now += 0.01
        if errors:
            raise errors.pop(0)

    policy.retrying(clock.now + 30, clock=clock, sleep=clock.sleep)(failing)
    # Down: the back-off grows to its cap; electing: back to the short wait at once.
    assert clock.sleeps[4] >= 1.0
    assert all(0.1 <= pause <= 0.12 for pause in clock.sleeps[5:]), clock.sleeps


def test_retry_policy_does_not_retry_permanent_errors(clock: FakeClock) -> None:
    policy = RetryPolicy("t", initial_wait_s=0.1, max_wait_s=1.0)
    calls = []

    def refused() -> None:
        calls.append(1)
        raise CAAuthError("nope")

    with pytest.raises(CAAuthError):
        policy.retrying(clock.now + 10, clock=clock, sleep=clock.sleep)(refused)
    assert calls == [1]


def test_retry_policy_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="initial_wait_s"):
        RetryPolicy("bad", initial_wait_s=2, max_wait_s=1)
    with pytest.raises(ValueError, match="electing_wait_s"):
        RetryPolicy("bad", initial_wait_s=0.1, max_wait_s=1, electing_wait_s=0)


# -- router ----------------------------------------------------------------------------


def test_router_prefers_the_first_ca_and_fails_over_in_the_same_call(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, _two = _router(clock, roots, breaker_threshold=2)
    assert router.issue(_csr()[0], "t", "r1", clock.now + 5).ca_name == "one"
    one.fail = CAUnavailableError("down", ca_name="one")
    assert router.issue(_csr()[0], "t", "r2", clock.now + 5).ca_name == "two"
    assert router.ca_states()["one"] == "closed"  # one failure, threshold 2
    assert router.issue(_csr()[0], "t", "r3", clock.now + 5).ca_name == "two"
    assert router.ca_states()["one"] == "open"
    calls_before = len(one.calls)
    assert router.issue(_csr()[0], "t", "r4", clock.now + 5).ca_name == "two"
    assert len(one.calls) == calls_before  # open: skipped without a call


def test_router_gives_up_at_the_deadline_with_a_retryable_error(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, two = _router(clock, roots, breaker_reset_s=0.5)
    one.fail = CAUnavailableError("down", ca_name="one")
    two.fail = CAUnavailableError("down", ca_name="two")
    start = clock.now
    with pytest.raises(NoCAAvailableError):
        router.issue(_csr()[0], "t", "r", start + 4.0)
    assert clock.now <= start + 4.0
    assert len(one.calls) >= 2  # half-open probes kept trying within the deadline
    assert not one.issued
    assert not two.issued


def test_router_reports_ambiguous_attempts(clock: FakeClock, roots: tuple[TestCA, TestCA]) -> None:
    router, one, _ = _router(clock, roots)
    one.fail = CAUnavailableError("read timeout", ca_name="one", ambiguous=True)
    issued = router.issue(_csr()[0], "t", "r", clock.now + 5)
    assert issued.ca_name == "two"
    assert issued.uncertain == ("one",)


def test_router_says_which_cas_may_have_signed_when_none_answered(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, two = _router(clock, roots)
    one.fail = CAUnavailableError("read timeout", ca_name="one", ambiguous=True)
    two.fail = CAUnavailableError("connection refused", ca_name="two")
    with pytest.raises(NoCAAvailableError) as caught:
        router.issue(_csr()[0], "t", "r", clock.now + 5)
    assert caught.value.uncertain == ("one",)
    assert caught.value.ambiguous


def test_router_with_no_ca_reached_is_not_ambiguous(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, two = _router(clock, roots)
    one.fail = CAUnavailableError("connection refused", ca_name="one")
    two.fail = CAUnavailableError("connection refused", ca_name="two")
    with pytest.raises(NoCAAvailableError) as caught:
        router.issue(_csr()[0], "t", "r", clock.now + 5)
    assert not caught.value.ambiguous


def test_router_auth_failure_everywhere_is_permanent(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, two = _router(clock, roots)
    one.fail = CAAuthError("bad key", ca_name="one")
    two.fail = CAAuthError("bad key", ca_name="two")
    with pytest.raises(CAAuthError):
        router.issue(_csr()[0], "t", "r", clock.now + 5)
    assert router.ca_states() == {"one": "closed", "two": "closed"}


def test_router_rejected_request_is_not_retried_elsewhere(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, two = _router(clock, roots)
    one.fail = CARequestRejectedError("bad csr", ca_name="one")
    with pytest.raises(CARequestRejectedError):
        router.issue(_csr()[0], "t", "r", clock.now + 5)
    assert two.calls == []
    with pytest.raises(CARequestRejectedError, match="template"):
        router.issue(_csr()[0], "nope", "r", clock.now + 5)


def test_router_revokes_only_at_the_issuer_and_waits_for_it(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, two = _router(clock, roots, breaker_threshold=1, breaker_reset_s=0.3)
    issued = router.issue(_csr()[0], "t", "r", clock.now + 5)
    assert router.ca_for(issued.certificate) == "one"
    one.fail = CAUnavailableError("down", ca_name="one")
    with pytest.raises(CAUnavailableError):
        router.revoke(issued.serial, "one", "superseded", clock.now + 1)
    assert not any(c.startswith("revoke") for c in two.calls)
    one.fail = None
    router.revoke(issued.serial, "one", "superseded", clock.now + 5)
    assert issued.serial in one.revoked
    with pytest.raises(CARequestRejectedError):
        router.revoke(issued.serial, "three", "superseded", clock.now + 5)


def test_an_open_circuit_that_outlasts_the_deadline_fails_at_once(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    # A hung CA opened its circuit: a revocation with a second to go cannot wait out
    # a 5 s reset, so it neither calls nor sleeps (the agent's loop defers it).
    router, one, _ = _router(clock, roots, breaker_threshold=1, breaker_reset_s=5.0)
    issued = router.issue(_csr()[0], "t", "r", clock.now + 5)
    one.fail = CAUnavailableError("no answer", ca_name="one", ambiguous=True)
    with pytest.raises(CAUnavailableError):
        router.revoke(issued.serial, "one", "superseded", clock.now + 1)
    calls, sleeps, started = len(one.calls), len(clock.sleeps), clock.now
    with pytest.raises(CACircuitOpenError) as raised:
        router.revoke(issued.serial, "one", "superseded", clock.now + 1)
    assert (len(one.calls), len(clock.sleeps), clock.now) == (calls, sleeps, started)
    assert 0 < raised.value.retry_after_s <= 5.0
    # With room before its deadline, the same call waits for the probe and succeeds.
    one.fail = None
    router.revoke(issued.serial, "one", "superseded", clock.now + 10)
    assert issued.serial in one.revoked
    assert clock.now - started >= raised.value.retry_after_s


def test_router_find_covers_every_ca(clock: FakeClock, roots: tuple[TestCA, TestCA]) -> None:
    router, one, _ = _router(clock, roots)
    csr, key = _csr()
    router.issue(csr, "t", "r", clock.now + 5)
    one.fail = CAUnavailableError("down", ca_name="one")
    router.issue(csr, "t", "r", clock.now + 5)
    assert sorted(i.ca_name for i in router.find(key.public_key())) == ["one", "two"]


def test_router_configuration_is_validated(clock: FakeClock, roots: tuple[TestCA, TestCA]) -> None:
    one = FakeCA("one", roots[0], clock)
    with pytest.raises(ValueError, match="unknown CA"):
        CARouter({"one": one}, {"t": ["one", "two"]})
    with pytest.raises(ValueError, match="lists no CA"):
        CARouter({"one": one}, {"t": []})


# -- patience: a CA cluster electing a new active node ---------------------------------


def test_breaker_waits_out_an_election_for_its_patience_then_counts_failures(
    clock: FakeClock,
) -> None:
    b = CircuitBreaker("ca", failure_threshold=1, patience_s=3.0, clock=clock)
    assert b.wait_out()  # the first "electing" starts the patience
    clock.now += 2.9
    assert b.wait_out()
    assert b.state == "closed"
    clock.now += 0.2
    assert not b.wait_out()  # patience ran out: the caller records a failure
    b.record_success()  # a success ends the streak: the next election gets full patience
    clock.now += 10
    assert b.wait_out()
    assert not CircuitBreaker("cfssl", clock=clock).wait_out()  # no patience by default
    with pytest.raises(ValueError, match="patience_s"):
        CircuitBreaker("ca", patience_s=-1)


def _patient_router(  # type: ignore[no-untyped-def]
    clock: FakeClock, roots: tuple[TestCA, TestCA], patience: float = 3.0
):
    """ "one" is OpenBao-like: it holds lost answers, and waits elections out for ``patience``."""
    router, one, two = _router(clock, roots, hold_lost=True)
    one.failover_patience_s = patience  # type: ignore[attr-defined]
    router.breakers["one"].patience_s = patience
    return router, one, two


def test_an_electing_cluster_without_patience_fails_over_at_once(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    # The default: "electing" means the request was not acted on, so the next CA
    # serves it within the same call, as for a CA that is down.
    router, one, _two = _patient_router(clock, roots, patience=0.0)
    one.fail = CAElectingError("cluster electing an active node", ca_name="one")
    issued = router.issue(_csr()[0], "t", "r1", clock.now + 1.0)
    assert (issued.ca_name, issued.uncertain) == ("two", ())
    assert one.calls == ["issue r1"]  # no retry of "one"
    assert not clock.sleeps  # and no wait


@pytest.mark.parametrize(
    "error",
    [
        CAElectingError("cluster electing an active node", ca_name="one"),
        CAUnavailableError("server disconnected", ca_name="one", ambiguous=True),
    ],
)
def test_an_electing_or_answer_lost_cluster_is_not_failed_over_from_within_patience(
    clock: FakeClock, roots: tuple[TestCA, TestCA], error: CAUnavailableError
) -> None:
    router, one, two = _patient_router(clock, roots)
    one.fail = error
    with pytest.raises(NoCAAvailableError if error.ambiguous else CAElectingError):
        router.issue(_csr()[0], "t", "r1", clock.now + 1.0)
    assert not two.calls  # never the next CA while the cluster may recover (or commit)
    assert router.breakers["one"].state == "closed"
    one.fail = None  # the cluster has a new active node: the same CA serves
    assert router.issue(_csr()[0], "t", "r2", clock.now + 1.0).ca_name == "one"


def test_an_election_longer_than_the_patience_fails_over(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, _two = _patient_router(clock, roots)
    one.fail = CAElectingError("cluster electing an active node", ca_name="one")
    with pytest.raises(CAElectingError):
        router.issue(_csr()[0], "t", "r1", clock.now + 1.0)
    clock.now += 3.5
    assert router.issue(_csr()[0], "t", "r2", clock.now + 1.0).ca_name == "two"


def test_an_answer_lost_then_a_success_at_the_same_ca_names_it_uncertain(
    clock: FakeClock, roots: tuple[TestCA, TestCA]
) -> None:
    router, one, _ = _patient_router(clock, roots)
    failures = [CAUnavailableError("server disconnected", ca_name="one", ambiguous=True)]
    original = one._call

    def flaky(what: str, timeout: float | None) -> None:
        original(what, timeout)
        if failures:
            raise failures.pop()

    one._call = flaky  # type: ignore[method-assign]
    issued = router.issue(_csr()[0], "t", "r", clock.now + 1.0)
    assert issued.ca_name == "one"
    assert issued.uncertain == ("one",)  # the first try may have been committed too


@pytest.mark.parametrize("patience", [0.0, 3.0])
def test_a_request_a_holding_ca_may_have_signed_never_goes_to_another_ca(
    clock: FakeClock, roots: tuple[TestCA, TestCA], patience: float
) -> None:
    router, one, two = _patient_router(clock, roots, patience)
    clock.now += 10  # long past any patience: the rule is about this request, not time
    failures = [
        CAUnavailableError("connection refused", ca_name="one"),  # the cluster is gone
        CAUnavailableError("server disconnected", ca_name="one", ambiguous=True),
    ]
    original = one._call

    def dying(what: str, timeout: float | None) -> None:
        original(what, timeout)
        raise failures.pop() if failures else CAUnavailableError("refused", ca_name="one")

    one._call = dying  # type: ignore[method-assign]
    with pytest.raises(NoCAAvailableError, match="may have signed") as caught:
        router.issue(_csr()[0], "t", "r", clock.now + 1.0)
    assert caught.value.uncertain == ("one",)  # the caller holds it and searches "one"
    assert not two.calls
    assert router.issue(_csr()[0], "t", "r-new", clock.now + 1.0).ca_name == "two"
