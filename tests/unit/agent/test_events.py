"""Stable event IDs and the JSON log line."""

from __future__ import annotations

import json
import logging

import pytest

from connector.agent.events import Event, JsonFormatter, emit


def test_ranges_are_stable() -> None:
    issuance = [Event.BATCH_RECEIVED, Event.INTENT_RECORDED, Event.CERT_ISSUED, Event.PFX_UPLOADED]
    revocation = [Event.CERT_REVOKED, Event.REVOCATION_CONFIRMED, Event.ORPHAN_REVOKED]
    assert all(1000 <= e < 2000 for e in issuance)
    assert all(3000 <= e < 4000 for e in revocation)
    assert Event.ELECTED == 5001
    assert Event.STALE_EPOCH == 5205
    assert all(5000 <= e < 6000 for e in (Event.ELECTED, Event.STEPPED_DOWN, Event.RELEASED))
    assert len({int(e) for e in Event}) == len(Event)


def test_emit_writes_one_json_object_with_id_and_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.events")
    with caplog.at_level(logging.INFO, logger="test.events"):
        emit(log, Event.CERT_ISSUED, request_id="r1", serial=12, ca="primary")
    line = json.loads(JsonFormatter().format(caplog.records[0]))
    assert line["event_id"] == 1002
    assert line["event"] == "cert_issued"
    assert (line["request_id"], line["serial"], line["ca"]) == ("r1", 12, "primary")
    assert caplog.records[0].getMessage().startswith("[1002 cert_issued]")


def test_foreign_records_keep_their_message() -> None:
    record = logging.LogRecord("pfxha.election", logging.INFO, "", 0, "elected %s", ("c1",), None)
    record.event_id = 5001
    line = json.loads(JsonFormatter().format(record))
    assert line["event_id"] == 5001
    assert line["message"] == "elected c1"
