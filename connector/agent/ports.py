"""What the agent needs from its collaborators, as small protocols.

The loop wires the real ones (``election.Elector``, ``connector.ca.CARouter``,
``connector.pki``, ``connector.service_client.ServiceClient``); the executor
only sees these shapes, so each side effect is one obvious call::

    fence = Fence(lease)
    fence.arm(7)                   # the epoch this action is meant for
    epoch = fence.epoch()          # LeaseLost unless leader with a fresh lease *now*
    service.record_intent(name, epoch, request_id, public_key_pem)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from connector.pki import PrivateKey
from connector.service_client import CertificateRequest, Intent
from election import HandOver

__all__ = [
    "Fence",
    "IssuanceService",
    "Issued",
    "Issuer",
    "Lease",
    "LeaseLost",
    "Pki",
    "ReconcileService",
]


class LeaseLost(Exception):  # noqa: N818 - it is a condition, not a failure of ours
    """No fresh lease right now (or the service fenced us): stop acting at once."""


class Lease(Protocol):
    def fresh_epoch(self) -> int | None: ...

    def release(self, reason: str) -> None: ...

    def hand_over(self, to: str, reason: str) -> HandOver:
        """Hand the lease to ``to`` (work-aware leadership)."""
        ...

    def leave(self, reason: str) -> None:
        """Hand the lease over (if held) and stop being a candidate, for good."""
        ...


class Issued(Protocol):
    """What a CA returned (``connector.ca.IssuedCertificate``)."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> Sequence[x509.Certificate]: ...

    @property
    def ca_name(self) -> str: ...

    @property
    def serial(self) -> int: ...

    @property
    def revoked(self) -> bool:
        """Found revoked in the CA's database (a search result); False for a fresh issue."""
        ...

    @property
    def uncertain(self) -> tuple[str, ...]:
        """Other CAs where an attempt timed out after it was sent: they may have issued too."""
        ...


class Issuer(Protocol):
    """The CA router: ordered CAs per template with failover (``connector.ca.CARouter``)."""

    def issue(
        self, csr: x509.CertificateSigningRequest, template: str, request_id: str, deadline: float
    ) -> Issued: ...

    def revoke(self, serial: int, issuer_ca: str, reason: str, deadline: float) -> None: ...

    def find(self, public_key: PublicKeyTypes) -> Sequence[Issued]: ...

    # find for each key, in order, in one search per CA (takeover reconciliation).
    def find_many(self, public_keys: Sequence[PublicKeyTypes]) -> Sequence[Sequence[Issued]]: ...

    def ca_states(self) -> Mapping[str, str]: ...


class IssuanceService(Protocol):
    """The service calls one issuance makes (``connector.service_client.ServiceClient``)."""

    def record_intent(
        self, name: str, epoch: int, request_id: str, public_key_pem: str
    ) -> None: ...

    def upload_result(
        self,
        name: str,
        epoch: int,
        request_id: str,
        envelope: bytes,
        serial: int,
        ca_name: str,
        *,
        uncertain: bool = False,
    ) -> None: ...

    def fail_request(
        self, name: str, epoch: int, request_id: str, reason: str, retryable: bool
    ) -> None: ...


class ReconcileService(Protocol):
    """The service calls a takeover's reconciliation makes (``ServiceClient``)."""

    def inflight_intents(self, name: str, epoch: int) -> Sequence[Intent]: ...

    def fail_request(
        self, name: str, epoch: int, request_id: str, reason: str, retryable: bool
    ) -> None: ...


@dataclass(frozen=True)
class Pki:
    """Key, CSR and PFX operations, bound to their configuration by the loop."""

    # key_type (profile word, e.g. "rsa2048") -> private key; may come from a pool.
    new_key: Callable[[str], PrivateKey]
    # (request, private key) -> CSR
    build_csr: Callable[[CertificateRequest, PrivateKey], x509.CertificateSigningRequest]
    # (private key, certificate, chain) -> PKCS#12 DER
    pack_pfx: Callable[[PrivateKey, x509.Certificate, Sequence[x509.Certificate]], bytes]
    # PFX -> CMS EnvelopedData to the service's KRA certificate
    seal: Callable[[bytes], bytes]


class Fence:
    """The one gate every side effect passes: a fresh epoch, or :class:`LeaseLost`.

    ``trip()`` closes it for the rest of the batch (a 409 seen by any worker),
    so other workers stop before their next side effect.
    """

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self._tripped = threading.Event()
        self.expected_epoch: int | None = None

    def arm(self, epoch: int) -> None:
        """Start an action meant for ``epoch``; a later epoch means a new leadership."""
        self.expected_epoch = epoch
        self._tripped.clear()

    @classmethod
    def armed(cls, lease: Lease, epoch: int) -> Fence:
        """A fence of its own for one batch of work meant for ``epoch``."""
        fence = cls(lease)
        fence.arm(epoch)
        return fence

    def trip(self) -> None:
        self._tripped.set()

    @property
    def tripped(self) -> bool:
        return self._tripped.is_set()

    def epoch(self) -> int:
        """The fresh epoch, unchanged since :meth:`arm`; else :class:`LeaseLost`."""
        if self._tripped.is_set():
            raise LeaseLost("fenced: another worker saw a stale epoch or lost the lease")
        epoch = self._lease.fresh_epoch()
        if epoch is None:
            raise LeaseLost("no fresh lease")
        if self.expected_epoch is not None and epoch != self.expected_epoch:
            # Our leadership changed under us: the work in hand belongs to the old one.
            raise LeaseLost(f"epoch moved from {self.expected_epoch} to {epoch}")
        return epoch
