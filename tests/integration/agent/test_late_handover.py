"""A successor told of an uncertain delivery revokes the late certificate, keeps the delivered one.

On the real CFSSL lab: the primary is paused while it holds a sign request, the
secondary signs, and the certificate is delivered with ``uncertain`` naming the
primary; the primary then records its own certificate for the same key. The
connector that delivered is gone: its successor learns the key from the
registration (``Uncertain``: the delivered CA and serial) and its late watch
sweeps the CAs' certdbs. Exactly one certificate for the key may stay valid,
and it must be the one the device holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chaos.launch import wait_for
from chaos.launch.cfssl import CfsslLab
from connector.agent.late import LateWatch, sweep_late
from connector.ca import CARouter, is_retryable
from connector.pki import KeyType, build_csr, generate_key
from connector.service_client import Uncertain

VARIABLES = {"UserName": "carol", "DeviceId": "dev-carol"}


def test_the_successor_revokes_the_late_certificate_and_keeps_the_delivered_one(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    router = cfssl_router(call_timeout_s=1.0, breaker_threshold=1, breaker_reset_s=0.5)
    # A warm connection to the primary, so that the pause catches a sent request
    # (tests/integration/pki/test_failover.py explains why).
    router.issue(
        build_csr(generate_key(KeyType.P256), "CN={{UserName}}", [], VARIABLES),
        "user-auth",
        "r-warm",
        time.monotonic() + 5,
    )
    key = generate_key(KeyType.P256)
    csr = build_csr(key, "CN={{UserName}}", [], VARIABLES)  # type: ignore[arg-type]
    cfssl_cas.pause("primary")
    try:
        delivered = router.issue(csr, "user-auth", "r-late", time.monotonic() + 5)
    finally:
        cfssl_cas.resume("primary")
    assert (delivered.ca_name, delivered.uncertain) == ("secondary", ("primary",))
    wait_for(
        lambda: len(router.find(key.public_key())) == 2,
        timeout=5,
        what="the paused primary to record its late certificate",
    )

    # What the registration hands the successor (the service keeps it for the window).
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    handed = Uncertain(
        "r-late", 7, pem.decode(), age_s=1.0, ca_name="secondary", serial=delivered.serial
    )
    watch = LateWatch(30.0)
    watch.inherit([], [handed])  # as the successor's executor does with its registration
    report = sweep_late(
        watch,
        router,
        None,  # a standby's sweep needs no lease; a new leader's fence changes nothing here
        name="c2",
        deadline=lambda: time.monotonic() + 5,
        is_retryable=is_retryable,
    )

    assert [r.ca_name for r in report.revoked] == ["primary"]
    states = {(c.ca_name, c.serial): c.revoked for c in router.find(key.public_key())}
    assert states[("secondary", delivered.serial)] is False  # the device's certificate
    late = [k for k in states if k != ("secondary", delivered.serial)]
    assert [k[0] for k in late] == ["primary"]
    assert states[late[0]] is True
    # The key stays watched (another copy may still come), and a second sweep finds
    # nothing more to revoke.
    again = sweep_late(
        watch,
        router,
        None,
        name="c2",
        deadline=lambda: time.monotonic() + 5,
        is_retryable=is_retryable,
    )
    assert again.revoked == []
