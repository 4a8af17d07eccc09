"""``pfxha history --serial``: the pure parts (serial parsing, the sources, the join)."""

from __future__ import annotations

import json

import pytest

from connector.serial_trace import (
    SerialRecord,
    parse_serial,
    records_from_log,
    records_from_service,
    trace_serial,
)
from election import HistoryEntry

HISTORY = (
    HistoryEntry(7, "c1", "2026-12-02T10:00:00Z", "elected", to="2026-12-02T11:00:00Z"),
    HistoryEntry(8, "c2", "2026-12-02T11:00:00Z", "c1's session expired"),
)


def test_parse_serial_takes_decimal_hex_and_colon_hex() -> None:
    assert parse_serial("4170241") == parse_serial("0x3FA201") == parse_serial("3f:a2:01")
    with pytest.raises(ValueError, match="not a serial"):
        parse_serial("zz")


def _line(event_id: int, serial: object, **fields: object) -> str:
    return json.dumps(
        {"ts": "2026-12-02T10:30:00.000Z", "event_id": event_id} | fields | {"serial": serial}
    )


def test_log_records_are_the_audit_events_of_that_serial_only() -> None:
    lines = [
        _line(1002, 4170241, connector="c1", epoch=7, request_id="r1", ca="primary"),
        _line(1003, 4170241, connector="c1", epoch=7),
        _line(1002, 99, connector="c1", epoch=7),  # another serial
        _line(5001, 4170241, connector="c1", epoch=7),  # not an audit event
        "not json",
        "[1, 2]",
    ]
    found = records_from_log(lines, 4170241, "c1.log")
    assert [(r.what, r.connector, r.epoch) for r in found] == [
        ("cert_issued", "c1", 7),
        ("pfx_uploaded", "c1", 7),
    ]
    assert found[0].source == "log c1.log"
    assert "request_id=r1" in found[0].detail


def test_service_records_name_the_uploader_and_the_revoker() -> None:
    requests = [
        {
            "id": "r1",
            "connector": "c1",
            "epoch": 7,
            "ca_name": "primary",
            "state": "delivered",
            "issued_at": "t1",
        }
    ]
    revocations = [
        {
            "state": "done",
            "done_by": "c2",
            "done_epoch": 8,
            "done_at": "t2",
            "reason": "superseded",
            "event": "retire",
        }
    ]
    found = records_from_service(requests, revocations)
    assert [(r.what, r.connector, r.epoch) for r in found] == [
        ("uploaded", "c1", 7),
        ("revoked", "c2", 8),
    ]


def test_trace_joins_each_record_with_its_epochs_leadership() -> None:
    records = [
        SerialRecord("service", "uploaded", "c1", 7, "t1"),
        SerialRecord("service", "revoked", "c2", 8, "t2"),
    ]
    traced = trace_serial(records, HISTORY)
    assert [(t.leadership.name if t.leadership else None, t.note) for t in traced] == [
        ("c1", ""),
        ("c2", ""),
    ]
    assert traced[0].to_dict()["leadership"]["to"] == "2026-12-02T11:00:00Z"


def test_trace_says_why_a_record_does_not_fit() -> None:
    records = [
        SerialRecord("log x", "cert_issued", "c3", 7, None),  # history: epoch 7 was c1's
        SerialRecord("service", "uploaded", "c1", 3, None),  # trimmed from the history
        SerialRecord("service", "uploaded", "c1", 9, None),  # not (yet) in the history
        SerialRecord("service", "revocation pending", None, None, None),
    ]
    notes = [t.note for t in trace_serial(records, HISTORY)]
    assert notes == [
        "the history says epoch 7 was c1's",
        "epoch 3 is older than the kept history (from 7)",
        "epoch 9 is not in ZooKeeper's history",
        "the record names no epoch",
    ]
