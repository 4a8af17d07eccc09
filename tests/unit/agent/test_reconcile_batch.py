"""Takeover reconciliation searches the CAs once for every stale intent, not once per intent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connector.agent.ports import Fence
from connector.agent.reconcile import reconcile


class Lease:
    def fresh_epoch(self) -> int | None:
        return 5

    def release(self, reason: str) -> None:
        raise AssertionError("not called")

    def leave(self, reason: str) -> None:
        raise AssertionError("not called")


@dataclass(frozen=True)
class Intent:
    request_id: str
    epoch: int
    public_key_pem: str
    cancelled: bool = False


@dataclass(frozen=True)
class Cert:
    serial: int
    ca_name: str
    status: str = "good"

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"


class AwayError(Exception):
    """A certdb that does not answer (retryable)."""


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


class Service:
    def __init__(self, intents: list[Intent]) -> None:
        self.intents = intents
        self.failed: list[str] = []

    def inflight_intents(self, name: str, epoch: int) -> list[Intent]:
        return self.intents

    def fail_request(self, name: str, epoch: int, request_id: str, why: str, retry: bool) -> None:
        self.failed.append(request_id)


class Issuer:
    def __init__(self, found: dict[str, list[Cert]], away: bool = False) -> None:
        self.found = found  # public key PEM -> what the CAs issued for it
        self.away = away
        self.searches: list[int] = []
        self.revoked: list[int] = []

    def find_many(self, public_keys: Sequence[Any]) -> list[list[Cert]]:
        self.searches.append(len(public_keys))
        if self.away:
            raise AwayError("certdb primary unreachable")
        pems = [
            k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
            for k in public_keys
        ]
        return [self.found.get(pem, []) for pem in pems]

    def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None:
        self.revoked.append(serial)


def _run(service: Service, issuer: Issuer) -> Any:
    fence = Fence(Lease())
    fence.arm(5)
    return reconcile(
        service,
        issuer,  # type: ignore[arg-type]
        fence,
        name="c2",
        deadline=lambda: 5.0,
        is_retryable=lambda exc: isinstance(exc, AwayError),
    )


@pytest.fixture
def keys() -> list[ec.EllipticCurvePrivateKey]:
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]


def test_one_search_for_every_intent_and_each_orphan_revoked(
    keys: list[ec.EllipticCurvePrivateKey],
) -> None:
    intents = [Intent(f"req-{i}", 4, _pem(k)) for i, k in enumerate(keys)]
    issuer = Issuer({_pem(keys[1]): [Cert(11, "primary"), Cert(12, "primary", "revoked")]})
    service = Service(intents)
    report = _run(service, issuer)
    assert issuer.searches == [3]
    assert issuer.revoked == [11]
    # Intents are settled side by side: every request handed back, in any order.
    assert sorted(service.failed) == ["req-0", "req-1", "req-2"]
    assert report.complete


def test_a_search_that_fails_leaves_every_intent_in_flight(
    keys: list[ec.EllipticCurvePrivateKey],
) -> None:
    service = Service([Intent(f"req-{i}", 4, _pem(k)) for i, k in enumerate(keys)])
    issuer = Issuer({}, away=True)
    report = _run(service, issuer)
    assert issuer.searches == [3]
    assert report.waiting == ["req-0", "req-1", "req-2"]
    assert service.failed == []
    assert not report.complete


def test_no_intents_no_search() -> None:
    issuer = Issuer({})
    assert _run(Service([]), issuer).intents == 0
    assert issuer.searches == []
