"""A hung CA's scenarios: the fault's steps in order, and the late-certificate check."""

from __future__ import annotations

import itertools
from typing import Any, cast

from chaos.checkers import CaCertificate, DeliveredCertificate, late_certificates
from chaos.drill import faults
from chaos.drill._engine_base import DrillSettings
from chaos.drill.engine import DrillEngine
from chaos.drill.faults import RESUMED_S, ca_node_stall
from chaos.drill.result import RoundResult, ScenarioResult
from chaos.drill.scenarios import DOUBT_WAIT_S, SCENARIOS
from chaos.history import History


def _delivered(request: str, ca: str, serial: str) -> DeliveredCertificate:
    return DeliveredCertificate(request, serial, ca, f"dev-{request}", "p", 3)


def test_late_certificates_are_those_of_keys_in_doubt_that_nobody_holds() -> None:
    doubtful = {"k1": "r1", "k2": "r2"}
    delivered = [_delivered("r1", "secondary", "11"), _delivered("r2", "secondary", "12")]
    late = CaCertificate("primary", "21", revoked=False, public_key_sha256="k1")
    certificates = [
        CaCertificate("secondary", "11", revoked=False, public_key_sha256="k1"),  # delivered
        late,
        CaCertificate("primary", "22", revoked=False, public_key_sha256="k9"),  # not uncertain
        CaCertificate("secondary", "12", revoked=False, public_key_sha256="k2"),  # delivered
    ]
    assert late_certificates(doubtful, delivered, certificates) == [("r1", late)]
    # A key given up on (its request requeued): each of its certificates is late.
    assert late_certificates({"k3": "r3"}, delivered, certificates[:1]) == []
    other = CaCertificate("primary", "31", revoked=True, public_key_sha256="k3")
    assert late_certificates({"k3": "r3"}, delivered, [other]) == [("r3", other)]


class StallLab:
    """Records the order of what the fault does; a key in doubt appears on the 3rd read."""

    primary_ca = "primary"
    secondary_ca = "secondary"

    def __init__(self, doubt_after: int | None = 3) -> None:
        self.calls: list[str] = []
        self.reads = 0
        self.doubt_after = doubt_after

    def pause_ca(self, name: str) -> None:
        self.calls.append(f"pause {name}")

    def resume_ca(self, name: str) -> None:
        self.calls.append(f"resume {name}")

    def keys_in_doubt(self, since_unix: float, until_unix: float) -> dict[str, str]:
        self.reads += 1
        ready = self.doubt_after is not None and self.reads >= self.doubt_after
        return {"k1": "r1"} if ready else {}

    def connector_pid(self, name: str) -> int:
        return 4242

    def kill_connector(self, name: str) -> None:
        self.calls.append(f"kill {name}")

    def start_connector(self, name: str) -> None:
        self.calls.append(f"start {name}")


def test_ca_stall_kill_kills_the_leader_once_it_gave_a_key_up_then_resumes_the_ca() -> None:
    lab = StallLab()
    fault = SCENARIOS["ca-stall-kill"].build(cast(Any, lab), "c1")
    details = fault.inject()
    assert lab.calls == ["pause primary", "kill c1", "resume primary"]
    assert lab.reads == 3
    assert details["keys_in_doubt"] == 1
    assert isinstance(details["struck_at"], float)
    assert "notes" not in details
    fault.heal()
    # The CA resumed once (at inject); the connector comes back.
    assert lab.calls == ["pause primary", "kill c1", "resume primary", "start c1"]


def test_ca_stall_kill_says_so_when_the_leader_gave_no_key_up() -> None:
    lab = StallLab(doubt_after=None)
    ticks = itertools.count(0.0, 1.0)
    slept: list[float] = []
    fault = faults.ca_stall_kill(
        cast(Any, lab), "c2", clock=lambda: next(ticks), sleep=slept.append
    )
    details = fault.inject()
    assert details["keys_in_doubt"] == 0
    assert "gave no key up" in details["notes"][0]
    assert lab.calls == ["pause primary", "kill c2", "resume primary"]
    assert len(slept) == DOUBT_WAIT_S - 1  # polled until the deadline, not forever


def test_ca_stall_pauses_the_primary_and_resumes_it_at_heal() -> None:
    lab = StallLab()
    fault = SCENARIOS["ca-stall"].build(cast(Any, lab), "c1")
    assert fault.inject() == {"ca": "primary"}
    fault.heal()
    assert lab.calls == ["pause primary", "resume primary"]
    assert SCENARIOS["ca-stall"].late_check
    assert SCENARIOS["ca-stall-kill"].late_check
    assert (SCENARIOS["ca-stall"].kind, SCENARIOS["ca-stall-kill"].kind) == ("ca", "leader")
    # Both stall the CA in use: a round waits until the leader issues there again.
    hitting = {name for name, s in SCENARIOS.items() if s.hits_primary_ca}
    assert hitting == {"ca-down", "ca-stall", "ca-stall-kill", "ca-node-loss", "ca-node-stall"}


class RaftLab(StallLab):
    """A primary CA on OpenBao whose active node is bao2."""

    def ca_active_node(self, name: str) -> str:
        self.calls.append(f"active? {name}")
        return "bao2"

    def pause_ca_node(self, name: str, node: str) -> None:
        self.calls.append(f"pause {name}/{node}")

    def resume_ca_node(self, name: str, node: str) -> None:
        self.calls.append(f"resume {name}/{node}")

    def kill_ca_node(self, name: str, node: str) -> None:
        self.calls.append(f"kill {name}/{node}")

    def start_ca_node(self, name: str, node: str) -> None:
        self.calls.append(f"start {name}/{node}")


def test_ca_node_stall_hangs_the_active_node_then_resumes_and_restarts_it() -> None:
    lab = RaftLab()
    slept: list[float] = []
    fault = ca_node_stall(cast(Any, lab), "c1", sleep=slept.append)
    assert lab.calls == ["active? primary"]  # found when built, before the fault's clock
    assert fault.inject() == {"ca": "primary", "node": "bao2"}
    fault.heal()
    assert lab.calls[1:] == [
        "pause primary/bao2",
        "resume primary/bao2",  # met as it is for a while, then restarted
        "kill primary/bao2",
        "start primary/bao2",
    ]
    assert slept == [RESUMED_S]
    scenario = SCENARIOS["ca-node-stall"]
    assert (scenario.kind, scenario.late_check, scenario.recover_at_primary) == (
        "ca-node",
        True,
        True,
    )
    assert not SCENARIOS["ca-node-loss"].recover_at_primary


class LateDb:
    """Keys in doubt; ``open_reads`` reads still see a key of the window in flight."""

    def __init__(self, doubtful: dict[str, str], open_reads: int = 0) -> None:
        self.doubtful = doubtful
        self.open_reads = open_reads

    def keys_in_doubt(self, since_unix: float, until_unix: float) -> dict[str, str]:
        return self.doubtful

    def intents_open(self, since_unix: float, until_unix: float) -> int:
        self.open_reads -= 1
        return 1 if self.open_reads >= 0 else 0

    def delivered(self) -> list[DeliveredCertificate]:
        return [_delivered("r1", "secondary", "11"), _delivered("r2", "secondary", "12")]


class LateLab:
    """The CA's certificates as successive reads see them: the late one revoked on read N."""

    primary_ca = "primary"
    secondary_ca = "secondary"

    def __init__(self, revoked_on_read: int | None) -> None:
        self.reads = 0
        self.revoked_on_read = revoked_on_read

    def ca_certificates(self) -> list[CaCertificate]:
        self.reads += 1
        revoked = self.revoked_on_read is not None and self.reads >= self.revoked_on_read
        return [
            CaCertificate("secondary", "11", revoked=False, public_key_sha256="k1"),
            CaCertificate("primary", "21", revoked=revoked, public_key_sha256="k1"),
            CaCertificate("secondary", "12", revoked=False, public_key_sha256="k2"),
        ]


def _engine(db: LateDb, lab: LateLab, late_timeout: float) -> DrillEngine:
    return DrillEngine(
        cast(Any, lab),
        History(),
        cast(Any, None),
        cast(Any, None),
        cast(Any, db),
        DrillSettings(late_timeout=late_timeout),
        sleep=lambda _: None,
    )


def test_the_late_check_waits_for_the_revocation_and_counts() -> None:
    lab = LateLab(revoked_on_read=3)
    engine = _engine(LateDb({"k1": "r1", "k2": "r2"}), lab, late_timeout=60.0)
    outcome = RoundResult("ca-stall", 1, fault_at=0.0)
    engine._check_late(outcome, 0.0, 10.0)
    assert (outcome.keys_in_doubt, outcome.late_certificates, outcome.late_revoked) == (2, 1, 1)
    assert outcome.violations == []
    assert lab.reads == 3


def test_a_late_certificate_still_valid_at_the_deadline_is_a_violation() -> None:
    ticks = itertools.count(0.0, 10.0)
    engine = _engine(LateDb({"k1": "r1"}), LateLab(revoked_on_read=None), late_timeout=30.0)
    outcome = RoundResult("ca-stall-kill", 1, fault_at=0.0)
    engine._check_late(outcome, 0.0, 10.0, clock=lambda: next(ticks))
    assert (outcome.late_certificates, outcome.late_revoked) == (1, 0)
    assert len(outcome.violations) == 1
    assert "late certificate primary:21 for request r1" in outcome.violations[0]


def test_no_key_in_doubt_is_a_note_not_a_pass_in_silence() -> None:
    engine = _engine(LateDb({}), LateLab(revoked_on_read=None), late_timeout=30.0)
    outcome = RoundResult("ca-stall", 1, fault_at=0.0)
    engine._check_late(outcome, 0.0, 10.0)
    assert (outcome.keys_in_doubt, outcome.late_certificates) == (0, 0)
    assert outcome.violations == []
    assert outcome.notes == ["no key was given up on: the round made no late certificate"]


def test_the_contract_sums_the_late_check_over_its_rounds() -> None:
    checked = RoundResult("ca-stall", 1, fault_at=0.0, keys_in_doubt=3, late_certificates=2)
    checked.late_revoked = 2
    result = ScenarioResult("ca-stall", rounds=[checked, RoundResult("ca-stall", 2, 0.0)])
    assert result.to_contract()["late"] == {"keys_in_doubt": 3, "certificates": 2, "revoked": 2}
    assert (
        "late" not in ScenarioResult("pause", rounds=[RoundResult("pause", 1, 0.0)]).to_contract()
    )


def test_the_late_check_waits_until_no_key_of_the_stall_is_in_flight() -> None:
    # Nothing late yet, but a key of the window is still in flight for two reads: it
    # may be given up on and its late certificate appear, so the check polls on.
    lab = LateLab(revoked_on_read=None)
    db = LateDb({}, open_reads=2)
    engine = _engine(db, lab, late_timeout=60.0)
    outcome = RoundResult("ca-stall", 1, fault_at=0.0)
    engine._check_late(outcome, 0.0, 10.0)
    assert lab.reads == 3
    assert outcome.violations == []


def test_a_key_still_in_flight_at_the_deadline_is_a_note() -> None:
    ticks = itertools.count(0.0, 10.0)
    engine = _engine(LateDb({}, open_reads=100), LateLab(revoked_on_read=None), late_timeout=30.0)
    outcome = RoundResult("ca-stall", 1, fault_at=0.0)
    engine._check_late(outcome, 0.0, 10.0, clock=lambda: next(ticks))
    assert outcome.violations == []
    assert "1 key(s) of the stall still in flight 30s after the round" in outcome.notes[0]
