"""The lab's OpenBao CA tier against real ``bao server -dev`` processes: one cluster per
issuing CA chained to one root, each connector its own AppRole, and the checkers' view
(a read-only auditor lists the mount; CRL and OCSP agree with it)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chaos.checkers import DeliveredCertificate, Revocation, Snapshot, check_ocsp
from chaos.checkers.state import api_certificates, fetch_crl, ocsp_answers
from chaos.launch.ca_tier import CaTier
from connector.ca import CAAuthError, CARouter, OpenBaoCA, router_from_description
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key

PROFILE = ProfileTemplate("p", "CN={{UserName}},SERIALNUMBER={{DeviceId}}", (), KeyType.P256,
                          "user-auth")  # fmt: skip


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaTier]:
    # Dev-mode servers (nodes=0): the same provisioning as the Raft clusters, in seconds.
    tier = CaTier(
        tmp_path_factory.mktemp("tier") / "cfssl", kind="openbao", connectors=("c1",), nodes=0
    )
    tier.start()
    try:
        yield tier
    finally:
        tier.stop()


def _issue(router: CARouter, request: str) -> object:
    key = generate_key(KeyType.P256)
    csr = csr_for_profile(key, PROFILE, {"UserName": "u", "DeviceId": request})
    return router.issue(csr, "user-auth", request, time.monotonic() + 10)


def test_each_issuing_ca_on_its_own_cluster_chains_to_one_root(tier: CaTier) -> None:
    description = tier.describe("c1")
    primary, secondary = description["cas"]["primary"], description["cas"]["secondary"]
    assert primary["url"] != secondary["url"]  # two clusters
    assert "approle/c1/" in primary["role_id_file"]  # the connector's own AppRole
    root = tier.root_certificate
    for name in ("primary", "secondary"):
        tier.ca_certificate(name).verify_directly_issued_by(root)
    only_secondary = {**description, "templates": {"user-auth": ["secondary"]}}
    router = router_from_description(only_secondary)
    try:
        issued = _issue(router, "dev-1")
        assert issued.ca_name == "secondary"  # type: ignore[attr-defined]
    finally:
        router.close()


def test_the_checkers_see_listing_crl_and_ocsp_agree(tier: CaTier) -> None:
    router = router_from_description(tier.describe("c1"))
    try:
        kept, gone = _issue(router, "dev-2"), _issue(router, "dev-3")
        router.revoke(gone.serial, "primary", "keyCompromise", time.monotonic() + 10)  # type: ignore[attr-defined]
    finally:
        router.close()
    source = tier.sources()["primary"]
    assert source.api is not None
    assert source.certdb is None
    pairs = api_certificates("primary", source.api)
    listed = {record.serial: record.revoked for record, _ in pairs}
    assert listed[str(kept.serial)] is False  # type: ignore[attr-defined]
    assert listed[str(gone.serial)] is True  # type: ignore[attr-defined]
    assert str(gone.serial) in fetch_crl(source.crl_url)  # type: ignore[attr-defined]
    answers = ocsp_answers(source.api, [certificate for _, certificate in pairs])
    snapshot = Snapshot(
        delivered=(DeliveredCertificate("r2", str(kept.serial), "primary"),),  # type: ignore[attr-defined]
        ca_certificates=tuple(record for record, _ in pairs),
        revocations=(Revocation("v", str(gone.serial), "primary", "done", "r3"),),  # type: ignore[attr-defined]
        ocsp={"primary": answers},
    )
    assert check_ocsp(snapshot) == []
    assert answers[str(gone.serial)] == "revoked"  # type: ignore[attr-defined]
    # Read again with the same node serving: the same client (no new AppRole login).
    assert tier.sources()["primary"].api is source.api


def test_the_auditor_may_read_but_never_sign(tier: CaTier) -> None:
    auditor = tier.sources()["secondary"].api
    assert auditor is not None
    key = generate_key(KeyType.P256)
    csr = csr_for_profile(key, PROFILE, {"UserName": "u", "DeviceId": "dev-4"})
    with pytest.raises(CAAuthError):
        auditor.issue(csr, "user-auth", "r4", timeout=5)


def test_allow_and_deny_give_and_take_a_connectors_approle(tier: CaTier) -> None:
    assert tier.client_spec("c9") == {}  # no CFSSL CA: no mutual-TLS pair to add
    tier.allow("c9")
    spec = tier.describe("c9")["cas"]["primary"]
    assert "approle/c9/" in spec["secret_id_file"]
    ca = OpenBaoCA.from_dict(spec, timeout=10.0)
    key = generate_key(KeyType.P256)
    csr = csr_for_profile(key, PROFILE, {"UserName": "u", "DeviceId": "dev-5"})
    try:
        ca.issue(csr, "user-auth", "r5", timeout=5)  # logged in: it holds a token now
        tier.deny("c9")
        with pytest.raises(CAAuthError):  # its token revoked, its secret-id gone
            ca.issue(csr, "user-auth", "r6", timeout=5)
    finally:
        ca.close()
    tier.allow("c9")  # a fresh secret-id
    again = OpenBaoCA.from_dict(tier.describe("c9")["cas"]["primary"], timeout=10.0)
    try:
        again.issue(csr, "user-auth", "r7", timeout=5)
    finally:
        again.close()
