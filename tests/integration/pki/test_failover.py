"""CA failover on the real CFSSL lab: breakers, deadlines, revocation routing, bad answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from chaos.launch import wait_for
from chaos.launch.cfssl import CfsslLab
from connector.ca import (
    CAAuthError,
    CABadResponseError,
    CARequestRejectedError,
    CARouter,
    CAUnavailableError,
    CfsslCA,
    NoCAAvailableError,
    is_retryable,
)
from connector.pki import KeyType, build_csr, generate_key

VARIABLES = {"UserName": "bob", "DeviceId": "dev-bob"}


def _csr(key: PrivateKeyTypes | None = None):  # type: ignore[no-untyped-def]
    key = key or generate_key(KeyType.P256)
    return build_csr(key, "CN={{UserName}}", [], VARIABLES), key  # type: ignore[arg-type]


def _rows(lab: CfsslLab) -> dict[str, int]:
    return {name: lab.certdb(name).count() for name in lab.names}


def test_primary_killed_secondary_issues_then_primary_recovers_through_half_open(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    changes: list[tuple[str, str, str]] = []
    router = cfssl_router(
        breaker_threshold=1,
        breaker_reset_s=1.5,  # long enough to observe "open" on a loaded machine
        on_state_change=lambda *c: changes.append(c),
    )
    assert router.issue(_csr()[0], "user-auth", "r0", time.monotonic() + 5).ca_name == "primary"

    cfssl_cas.kill("primary")
    # The very first request after the kill is served, by the secondary.
    issued = router.issue(_csr()[0], "user-auth", "r1", time.monotonic() + 5)
    assert issued.ca_name == "secondary"
    assert router.ca_states() == {"primary": "open", "secondary": "closed"}
    assert not router.ca_up("primary")
    # While open, the primary is skipped without a connection attempt.
    assert router.issue(_csr()[0], "user-auth", "r2", time.monotonic() + 5).ca_name == "secondary"

    cfssl_cas.start("primary")
    wait_for(lambda: router.ca_states()["primary"] == "half_open", timeout=5, what="half-open")
    issued = router.issue(_csr()[0], "user-auth", "r3", time.monotonic() + 5)
    assert issued.ca_name == "primary"
    assert router.ca_up("primary")
    assert [c for c in changes if c[0] == "primary"] == [
        ("primary", "closed", "open"),
        ("primary", "open", "half_open"),
        ("primary", "half_open", "closed"),
    ]


def test_both_down_is_a_retryable_error_within_the_deadline_and_nothing_issued(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    router = cfssl_router(breaker_threshold=1, breaker_reset_s=0.2, call_timeout_s=0.5)
    before = _rows(cfssl_cas)
    cfssl_cas.kill("primary")
    cfssl_cas.kill("secondary")
    started = time.monotonic()
    deadline = started + 1.5
    with pytest.raises(NoCAAvailableError) as caught:
        router.issue(_csr()[0], "wifi", "r-down", deadline)
    elapsed = time.monotonic() - started
    assert is_retryable(caught.value)
    assert elapsed <= 1.5 + 1.0  # bounded by the caller's deadline (loose: shared machine)
    assert elapsed >= 0.5  # it kept trying (half-open probes) until near the deadline
    assert _rows(cfssl_cas) == before


def test_revocation_waits_for_the_issuing_ca_and_succeeds_when_it_returns(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    router = cfssl_router(breaker_threshold=1, breaker_reset_s=0.2)
    issued = router.issue(_csr()[0], "user-auth", "r-rev", time.monotonic() + 5)
    cfssl_cas.kill("primary")
    # Down: fails as retryable, never goes to the secondary.
    with pytest.raises(CAUnavailableError):
        router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 0.5)
    secondary_rows = _rows(cfssl_cas)["secondary"]
    # A revocation in flight while the CA comes back completes within its deadline.
    restart = threading.Timer(0.5, cfssl_cas.start, args=("primary",))
    restart.start()
    try:
        router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 10)
    finally:
        restart.join()
    assert router.status(issued.serial, "primary").value == "revoked"
    assert _rows(cfssl_cas)["secondary"] == secondary_rows


def test_paused_primary_times_out_secondary_issues_and_the_late_orphan_is_findable(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    router = cfssl_router(call_timeout_s=1.0, breaker_threshold=1, breaker_reset_s=0.5)
    # A connection to the primary already up, as in steady issuance: over mutual TLS
    # a new connection to a paused CA stalls in the handshake, before any request
    # is sent (a clean ConnectTimeout, nothing uncertain).
    warm = router.issue(_csr()[0], "user-auth", "r-warm", time.monotonic() + 5)
    assert warm.ca_name == "primary"
    csr, key = _csr()
    cfssl_cas.pause("primary")
    try:
        issued = router.issue(csr, "user-auth", "r-pause", time.monotonic() + 5)
    finally:
        cfssl_cas.resume("primary")
    assert issued.ca_name == "secondary"
    # The primary got the request and may still sign it: the caller is told where to look.
    assert issued.uncertain == ("primary",)
    wait_for(
        lambda: len(router.find(key.public_key())) == 2,
        timeout=5,
        what="the paused primary to record its late certificate",
    )
    assert sorted(f.ca_name for f in router.find(key.public_key())) == ["primary", "secondary"]


def test_a_certificate_from_the_wrong_issuer_is_rejected(cfssl_cas: CfsslLab) -> None:
    # A client that believes the secondary's server is the primary: the answer is signed
    # by the wrong CA and must not be accepted (nor packed into a PFX).
    spec = dict(cfssl_cas.describe()["cas"]["primary"])
    spec["url"] = cfssl_cas.url("secondary")
    spec["auth_key"] = cfssl_cas.auth_key("secondary")
    impostor = CfsslCA.from_dict(spec)
    with pytest.raises(CABadResponseError, match="issuer"):
        impostor.issue(_csr()[0], "user-auth", "r-wrong")
    impostor.close()


def test_wrong_auth_key_is_a_permanent_auth_error_and_fails_over(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    spec = dict(cfssl_cas.describe()["cas"]["primary"])
    spec["auth_key"] = "00" * 16
    bad = CfsslCA.from_dict(spec)
    with pytest.raises(CAAuthError) as caught:
        bad.issue(_csr()[0], "user-auth", "r-auth")
    assert not is_retryable(caught.value)
    good = CfsslCA.from_dict(cfssl_cas.describe()["cas"]["secondary"])
    router = CARouter({"primary": bad, "secondary": good}, {"user-auth": ["primary", "secondary"]})
    assert router.issue(_csr()[0], "user-auth", "r", time.monotonic() + 5).ca_name == "secondary"
    only_bad = CARouter({"primary": bad}, {"user-auth": ["primary"]})
    with pytest.raises(CAAuthError):
        only_bad.issue(_csr()[0], "user-auth", "r", time.monotonic() + 5)
    router.close()


def test_unknown_template_is_rejected_permanently(
    cfssl_router: Callable[..., CARouter],
) -> None:
    router = cfssl_router()
    with pytest.raises(CARequestRejectedError):
        router.issue(_csr()[0], "no-such-template", "r", time.monotonic() + 5)
    ca = router.cas["primary"]
    with pytest.raises(CARequestRejectedError):
        ca.issue(_csr()[0], "not-a-profile", "r")
