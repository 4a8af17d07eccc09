"""History entries and the pause node are untrusted input: parse what is readable."""

from __future__ import annotations

from election._history import history_seq
from election._model import HistoryEntry, PauseInfo


def test_history_entry_round_trips_and_refuses_garbage() -> None:
    entry = HistoryEntry(7, "c2", "2026-12-02T10:00:00.000Z", "first in line, lease free")
    assert HistoryEntry.parse(entry.to_json()) == entry
    for raw in (b"", b"[]", b'{"epoch": "7", "name": "c2"}', b'{"epoch": true, "name": "c"}'):
        assert HistoryEntry.parse(raw) is None
    assert HistoryEntry.parse(b'{"epoch": 3, "name": "c1"}') == HistoryEntry(3, "c1", "", "")


def test_history_node_names() -> None:
    assert history_seq("h-0000000042") == 42
    assert history_seq("h-42") is None
    assert history_seq("x-0000000001") is None


def test_any_pause_node_pauses_whatever_it_holds() -> None:
    info = PauseInfo("2026-12-02T10:00:00.000Z", "CA maintenance")
    assert PauseInfo.parse(info.to_json()) == info
    assert PauseInfo.parse(b"\xff garbage") == PauseInfo("", "")
