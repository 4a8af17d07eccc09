from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from chaos.history import Event, History, pair_operations, read_history, write_history


def _clock() -> itertools.count[float]:
    return itertools.count(100.0, 0.5)


def test_history_round_trips_through_jsonl(tmp_path: Path) -> None:
    ticks = _clock()
    path = tmp_path / "history.jsonl"
    history = History(path=path, clock=lambda: next(ticks), wall_clock=lambda: 1.7e9)
    op = history.invoke("device-1", "checkin", {"device": "1"})
    history.complete(op, "ok", {"delivered": [{"serial": "42"}]})
    history.info("nemesis", "fault", {"phase": "start", "round": 1})
    history.close()

    events = read_history(path)
    assert events == history.events
    assert [e.type for e in events] == ["invoke", "ok", "info"]
    assert events[1].value == {"delivered": [{"serial": "42"}]}
    # Monotonic, relative to the history's start.
    assert [e.time for e in events] == [0.5, 1.0, 1.5]

    copy = tmp_path / "copy.jsonl"
    write_history(events, copy)
    assert read_history(copy) == events


def test_truncated_last_line_is_ignored_but_corruption_elsewhere_is_not(tmp_path: Path) -> None:
    good = Event(0, "info", "observer", "leader", {"epoch": 1}).to_json()
    path = tmp_path / "h.jsonl"
    path.write_text(good + "\n" + good[:20])
    assert len(read_history(path)) == 1
    path.write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(ValueError, match=r"h.jsonl:1"):
        read_history(path)


def test_complete_rejects_misuse() -> None:
    history = History()
    info = history.info("observer", "leader")
    with pytest.raises(ValueError, match="invoke event"):
        history.complete(info, "ok")
    op = history.invoke("admin", "revoke")
    with pytest.raises(ValueError, match="ok, fail or info"):
        history.complete(op, "invoke")


def test_pair_operations_matches_completions_per_process() -> None:
    ticks = _clock()
    history = History(clock=lambda: next(ticks))
    a = history.invoke("device-a", "checkin")
    b = history.invoke("device-b", "checkin")
    history.info("observer", "leader", {"epoch": 3})
    history.complete(b, "fail", {"error": "503"})
    history.complete(a, "ok")
    history.invoke("device-c", "enroll")

    ops = list(pair_operations(history.events))
    assert [(o.process, o.result) for o in ops] == [
        ("device-a", "ok"),
        ("device-b", "fail"),
        ("device-c", "pending"),
    ]
    assert ops[0].latency == pytest.approx(2.0)
    assert ops[2].latency is None
