"""OpenBao in the drill: the OCSP checker, reading a CA through its API, the CA vendor
choices, and ca-node-loss only where the primary CA runs on OpenBao."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chaos.checkers import (
    CaCertificate,
    DeliveredCertificate,
    Revocation,
    Snapshot,
    check_all,
    check_ocsp,
)
from chaos.checkers.state import api_certificates, ocsp_answers
from chaos.drill.scenarios import ALL, parse_scenarios
from chaos.launch._bao_node import raft_active
from chaos.launch._process import LaunchError
from chaos.launch.ca_tier import CaTier, vendors
from chaos.launch.netns import Host
from connector.ca import CABadResponseError, CertStatus, IssuedCertificate
from tests.unit.pki._ca import make_intermediate, make_root

ROOT = make_root()
ISSUING = make_intermediate(ROOT, "OpenBao issuing")


def _snapshot(ocsp: dict[str, str]) -> Snapshot:
    """r1 delivered and good; r2 delivered, then revoked by an admin action."""
    return Snapshot(
        delivered=(
            DeliveredCertificate("r1", "11", "secondary"),
            DeliveredCertificate("r2", "12", "secondary"),
        ),
        ca_certificates=(
            CaCertificate("secondary", "11", revoked=False),
            CaCertificate("secondary", "12", revoked=True),
        ),
        revocations=(Revocation("v1", "12", "secondary", "done", "r2"),),
        crls={"secondary": frozenset({"12"})},
        ocsp={"secondary": ocsp},
    )


def test_ocsp_agreeing_with_the_ca_passes() -> None:
    assert check_ocsp(_snapshot({"11": "good", "12": "revoked"})) == []


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"11": "good", "12": "good"}, "answers 'good' for delivered certificate secondary:12"),
        ({"11": "revoked", "12": "revoked"}, "answers 'revoked' for delivered certificate"),
        ({"12": "revoked"}, "no answer for delivered certificate secondary:11"),
        ({"11": "error: not signed by this CA", "12": "revoked"}, "answers 'error: not signed"),
    ],
)
def test_ocsp_checker_catches_a_wrong_or_missing_answer(
    answers: dict[str, str], expected: str
) -> None:
    violations = check_ocsp(_snapshot(answers))
    assert len(violations) == 1
    assert expected in violations[0]
    assert expected in " ".join(check_all([], _snapshot(answers)))  # part of every check


def test_a_revocation_confirmed_but_missed_by_the_ca_must_still_answer_revoked() -> None:
    snapshot = _snapshot({"11": "good", "12": "good"})
    at_ca = (CaCertificate("secondary", "11", False), CaCertificate("secondary", "12", False))
    planted = Snapshot(**{**snapshot.__dict__, "ca_certificates": at_ca})
    assert "expected 'revoked'" in check_ocsp(planted)[0]


def test_cas_without_a_responder_are_not_asked() -> None:
    assert check_ocsp(Snapshot(delivered=(DeliveredCertificate("r1", "11", "primary"),))) == []


@dataclass
class FakeApi:
    """What the checkers use of an OpenBao CA: list_issued and ocsp_status."""

    issued: list[IssuedCertificate]
    revoked: set[int] = field(default_factory=set)
    broken: set[int] = field(default_factory=set)

    def list_issued(self, *, timeout: float | None = None) -> list[IssuedCertificate]:
        return self.issued

    def ocsp_status(
        self, certificate: x509.Certificate, *, timeout: float | None = None
    ) -> CertStatus:
        if certificate.serial_number in self.broken:
            raise CABadResponseError("OCSP answer is not signed by this CA", ca_name="bao")
        revoked = certificate.serial_number in self.revoked
        return CertStatus.REVOKED if revoked else CertStatus.GOOD


def test_an_api_listing_becomes_records_and_every_certificate_is_asked() -> None:
    subject = ISSUING.certificate.subject
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(3)]
    certs = [ISSUING.sign(subject, key) for key in keys]
    revoked = IssuedCertificate.of(certs[1], [ISSUING.certificate], "bao", status="revoked")
    issued = [IssuedCertificate.of(certs[0], [ISSUING.certificate], "bao"), revoked]
    issued.append(IssuedCertificate.of(certs[2], [ISSUING.certificate], "bao"))
    api = FakeApi(issued, revoked={certs[1].serial_number}, broken={certs[2].serial_number})
    pairs = api_certificates("secondary", api)
    assert [r.revoked for r, _ in pairs] == [False, True, False]
    assert {r.serial for r, _ in pairs} == {str(c.serial_number) for c in certs}
    assert all(r.ca == "secondary" and len(r.public_key_sha256) == 64 for r, _ in pairs)
    answers = ocsp_answers(api, [c for _, c in pairs])
    assert answers[str(certs[0].serial_number)] == "good"
    assert answers[str(certs[1].serial_number)] == "revoked"
    assert answers[str(certs[2].serial_number)].startswith("error: ")


def test_ca_vendors_per_choice() -> None:
    assert vendors("cfssl") == {"primary": "cfssl", "secondary": "cfssl"}
    assert vendors("openbao") == {"primary": "openbao", "secondary": "openbao"}
    assert vendors("mixed") == {"primary": "cfssl", "secondary": "openbao"}
    with pytest.raises(ValueError, match="--ca: 'adcs'"):
        vendors("adcs")


def test_openbao_is_refused_on_the_hosts_lab_with_the_way_out(tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = Host("ca", "pfxha-x-ca", "198.18.0.5", "veth-x")
    with pytest.raises(LaunchError, match="--single-host or --ca cfssl"):
        CaTier(tmp_path, kind="mixed", placement=host)


def test_the_raft_node_scenarios_need_openbao_and_join_all_there() -> None:
    raft = ["ca-node-loss", "ca-node-stall"]
    assert not set(raft) & set(ALL)
    assert [s.name for s in parse_scenarios("all")] == ALL
    assert [s.name for s in parse_scenarios("all", ca="openbao")] == [*ALL, *raft]
    for name in raft:
        assert parse_scenarios(name, ca="openbao")[0].kind == "ca-node"
        for ca in ("cfssl", "mixed"):  # mixed: the primary is CFSSL, no Raft node to lose
            with pytest.raises(ValueError, match="add --ca openbao"):
                parse_scenarios(f"ca-down,{name}", ca=ca)


def test_the_active_node_is_the_one_most_raft_views_name_not_one_that_says_so() -> None:
    # bao2 hung while active and resumed still saying so (sys/health 200, sys/leader
    # is_self); every node's Raft layer, bao2's too, follows bao3.
    assert raft_active({"bao1": "bao3", "bao2": "bao3", "bao3": "bao3"}) == "bao3"
    assert raft_active({"bao1": "bao3", "bao2": "bao2", "bao3": "bao3"}) == "bao3"


def test_no_majority_of_the_views_or_none_is_no_active_node() -> None:
    assert raft_active({"bao1": "bao1", "bao2": "bao2", "bao3": None}) is None
    assert raft_active(dict.fromkeys(("bao1", "bao2", "bao3"))) is None
    # A new cluster: only its first node is unsealed, and it leads alone.
    assert raft_active({"bao1": "bao1", "bao2": None, "bao3": None}) == "bao1"
