"""The checkers catch planted violations and pass a clean state."""

from __future__ import annotations

from chaos.checkers import (
    AcceptedAction,
    CaCertificate,
    DeliveredCertificate,
    Intent,
    RequestRecord,
    Revocation,
    Snapshot,
    check_all,
    check_ca_agreement,
    check_duplicates,
    check_lost_requests,
    check_revocations,
    check_single_active,
    check_stale_epochs,
    count_duplicates,
    count_extras,
    count_requests,
)
from chaos.history import History


def _history_with(requests: list[str]) -> History:
    history = History()
    op = history.invoke("device-d1", "enroll", {"device": "d1"})
    history.complete(op, "ok", {"device": "d1", "requests": requests})
    history.info("observer", "connectors", {"active": ["c1"], "quorum": True, "settled": True})
    op = history.invoke("device-d1", "checkin", {"device": "d1"})
    history.complete(
        op,
        "ok",
        {"device": "d1", "delivered": [{"request": "r1", "serial": "11", "pfx_ok": True}]},
    )
    return history


def _clean_snapshot() -> Snapshot:
    return Snapshot(
        requests=(
            RequestRecord("r1", "d1", "p1", "delivered"),
            RequestRecord("r2", "d2", "p1", "failed", reason="device deleted"),
        ),
        delivered=(DeliveredCertificate("r1", "11", "primary", "d1", "p1", epoch=2),),
        intents=(Intent("r1", 1, "key-a"), Intent("r1", 2, "key-b")),
        ca_certificates=(
            # A deposed leader's orphan, revoked by the new leader's reconciliation.
            CaCertificate("primary", "10", revoked=True, public_key_sha256="key-a"),
            CaCertificate("primary", "11", revoked=False, public_key_sha256="key-b"),
            CaCertificate("secondary", "7", revoked=True, public_key_sha256="key-c"),
        ),
        revocations=(Revocation("v1", "7", "secondary", "done"),),
        crls={"primary": frozenset({"10"}), "secondary": frozenset({"7"})},
        accepted=(
            AcceptedAction(1, "register", "c1", 1),
            AcceptedAction(2, "intent", "c1", 1),
            AcceptedAction(3, "register", "c2", 2),
            AcceptedAction(4, "upload", "c2", 2),
        ),
    )


def test_clean_state_has_no_violations() -> None:
    history = _history_with(["r1", "r2"])
    assert check_all(history.events, _clean_snapshot()) == []


def test_planted_lost_request_is_caught() -> None:
    history = _history_with(["r1", "r2", "r3"])  # r3 never reached the service
    snapshot = _clean_snapshot()
    stuck = Snapshot(
        requests=(*snapshot.requests, RequestRecord("r4", "d4", "p1", "in-flight")),
    )
    violations = check_lost_requests(history.events, stuck.requests)
    assert any("r3" in v and "unknown to the service" in v for v in violations)
    assert any("r4" in v and "in-flight" in v for v in violations)
    counts = count_requests(history.events, stuck.requests)
    assert (counts.created, counts.delivered, counts.failed, counts.lost) == (4, 1, 1, 2)


def test_failed_request_needs_a_reason() -> None:
    violations = check_lost_requests([], [RequestRecord("r9", "d9", "p1", "failed", reason=" ")])
    assert violations == ["request r9 failed without a visible reason"]


def test_planted_duplicate_certificate_is_caught() -> None:
    snapshot = _clean_snapshot()
    # The deposed leader's orphan was NOT revoked: two live certificates for r1.
    planted = Snapshot(
        delivered=snapshot.delivered,
        intents=snapshot.intents,
        ca_certificates=(
            CaCertificate("primary", "10", revoked=False, public_key_sha256="key-a"),
            CaCertificate("primary", "11", revoked=False, public_key_sha256="key-b"),
        ),
    )
    violations = check_duplicates(planted)
    assert len(violations) == 1
    assert "duplicate certificates for request r1" in violations[0]
    assert count_duplicates(planted) == 1
    assert count_extras(planted) == (1, 0)


def test_live_certificate_that_is_not_the_delivered_one_is_caught() -> None:
    snapshot = Snapshot(
        delivered=(DeliveredCertificate("r1", "11", "primary"),),
        intents=(Intent("r1", 1, "key-a"), Intent("r1", 2, "key-b")),
        ca_certificates=(
            CaCertificate("primary", "10", revoked=False, public_key_sha256="key-a"),
            CaCertificate("primary", "11", revoked=True, public_key_sha256="key-b"),
            CaCertificate("secondary", "99", revoked=False, public_key_sha256="nobody"),
        ),
    )
    violations = check_duplicates(snapshot)
    assert any("primary:10" in v and "not the delivered one" in v for v in violations)
    # One live certificate each for r1 and nobody: no duplicate, one orphan.
    assert count_extras(snapshot) == (0, 1)
    assert any("secondary:99" in v and "orphan" in v for v in violations)


def test_planted_stale_epoch_action_is_caught() -> None:
    accepted = [
        AcceptedAction(1, "register", "c1", 4),
        AcceptedAction(2, "register", "c2", 5),
        AcceptedAction(3, "upload", "c1", 4),  # the zombie's upload got through
        AcceptedAction(4, "upload", "c2", 5),
    ]
    violations = check_stale_epochs(accepted)
    assert len(violations) == 1
    assert "upload #3 from c1 with epoch 4 after epoch 5" in violations[0]
    # The same actions, had the service accepted them in epoch order, are fine.
    in_order = [
        AcceptedAction(i, a.kind, a.connector, a.epoch)
        for i, a in enumerate(sorted(accepted, key=lambda a: a.epoch))
    ]
    assert check_stale_epochs(in_order) == []


def test_two_active_connectors_and_none_after_heal_are_caught() -> None:
    history = History()
    history.info("observer", "connectors", {"active": ["c1", "c2"], "quorum": True})
    history.info("observer", "connectors", {"active": [], "quorum": True, "settled": False})
    history.info("observer", "connectors", {"active": [], "quorum": False, "settled": True})
    history.info("observer", "connectors", {"active": [], "quorum": True, "settled": True})
    violations = check_single_active(history.events)
    assert len(violations) == 2
    assert "2 active connectors" in violations[0]
    assert "no active connector" in violations[1]


def test_revocation_must_reach_the_issuing_ca_and_its_crl() -> None:
    snapshot = Snapshot(
        ca_certificates=(
            CaCertificate("primary", "1", revoked=True),
            CaCertificate("primary", "2", revoked=False),
        ),
        revocations=(
            Revocation("v1", "1", "primary", "done"),
            Revocation("v2", "2", "primary", "done"),
            Revocation("v3", "3", "secondary", "pending"),
        ),
        crls={"primary": frozenset({"2"})},
    )
    violations = check_revocations(snapshot)
    assert any("v1" in v and "missing from primary's CRL" in v for v in violations)
    assert any("v2" in v and "not revoked at its CA" in v for v in violations)
    assert any("v3" in v and "pending" in v for v in violations)


def test_a_delivered_certificate_revoked_behind_the_services_back_is_flagged() -> None:
    snapshot = Snapshot(
        delivered=(
            DeliveredCertificate("r1", "1", "primary"),
            DeliveredCertificate("r2", "2", "primary"),
            DeliveredCertificate("r3", "3", "primary"),
        ),
        ca_certificates=(
            CaCertificate("primary", "1", revoked=True, reason="1"),  # nobody asked
            CaCertificate("primary", "2", revoked=True),  # the service asked
            CaCertificate("primary", "3", revoked=False),
        ),
        revocations=(Revocation("v2", "2", "primary", "done"),),
        crls={"primary": frozenset({"1", "2"})},
    )
    violations = check_ca_agreement(snapshot)
    assert len(violations) == 1
    assert "primary:1" in violations[0]
    assert "r1" in violations[0]
    assert "behind the service's back" in violations[0]
    assert violations[0] in check_all([], snapshot)


def test_a_revocation_undone_at_the_ca_is_flagged() -> None:
    # removeFromCRL after the connector revoked it: good again at the CA, off the CRL.
    snapshot = Snapshot(
        ca_certificates=(CaCertificate("primary", "7", revoked=False),),
        revocations=(Revocation("v7", "7", "primary", "done"),),
        crls={"primary": frozenset()},
    )
    violations = check_all([], snapshot)
    assert any("v7" in v and "not revoked at its CA" in v for v in violations)
    assert any("v7" in v and "missing from primary's CRL" in v for v in violations)
