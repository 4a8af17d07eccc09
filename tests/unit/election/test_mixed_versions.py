"""Two releases side by side (a rolling upgrade): each reads what the other writes.

docs/deployment.md "Rolling upgrade" states which releases may run together;
this is the part of it the code can check without two code bases: the readers
of every coordination node ignore fields they do not know (a newer writer) and
take absent optional fields as their defaults (an older writer).
"""

from __future__ import annotations

import json

from election import HistoryEntry, LeaderInfo, MemberInfo, SwitchoverRequest


def _raw(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_newer_members_node_reads_with_its_new_fields_ignored() -> None:
    current = MemberInfo(name="c1", host="h1", version="0.1.0", config_digest="ab" * 8)
    newer = {**json.loads(current.to_json()), "version": "0.2.0", "zone": "b", "weight": 3}
    parsed = MemberInfo.parse("c1", json.dumps(newer).encode())
    assert parsed == MemberInfo(name="c1", host="h1", version="0.2.0", config_digest="ab" * 8)


def test_an_older_members_node_reads_with_the_missing_fields_empty() -> None:
    parsed = MemberInfo.parse("c2", _raw(name="c2", host="h2", pid=7, priority=1, version="0.0.9"))
    assert (parsed.version, parsed.priority, parsed.pid) == ("0.0.9", 1, 7)
    assert (parsed.config_digest, parsed.fast_path, parsed.reach) == ("", "", {})


def test_a_newer_leaders_node_keeps_the_lease_fields_and_ignores_the_rest() -> None:
    raw = _raw(
        name="c1", epoch=9, since="2026-12-02T21:00:00Z", liveness="10.0.0.1:9470",
        incarnation="tok", node="m-c1-p0-0000000001", lease_ms=1000,
    )  # fmt: skip
    leader = LeaderInfo.parse(raw)
    assert leader is not None
    assert (leader.name, leader.epoch, leader.liveness, leader.incarnation, leader.node) == (
        "c1",
        9,
        "10.0.0.1:9470",
        "tok",
        "m-c1-p0-0000000001",
    )


def test_an_older_leader_without_incarnation_is_a_leader_without_a_fast_path() -> None:
    leader = LeaderInfo.parse(_raw(name="c1", epoch=9, since="2026-12-02T21:00:00Z"))
    assert leader is not None
    assert (leader.epoch, leader.incarnation, leader.liveness) == (9, None, None)


def test_history_and_switchover_nodes_with_new_fields_still_read() -> None:
    entry = HistoryEntry.parse(_raw(epoch=4, name="c2", since="s", reason="r", cause_id=12))
    assert entry == HistoryEntry(epoch=4, name="c2", since="s", reason="r")
    request = SwitchoverRequest.parse(_raw(to="c3", requested_at="t", by="operator"))
    assert (request.to, request.readable) == ("c3", True)
