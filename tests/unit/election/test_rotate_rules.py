"""ZooKeeper password rotation (issue 17): the ACL edits and the finish check, pure."""

from __future__ import annotations

from kazoo.security import make_acl, make_digest_acl

from election._acl import member_acl
from election._model import MemberInfo
from election._rotate import (
    RotationMarker,
    finish_problem,
    with_new_entry,
    without_old_entries,
)

ADMIN = make_digest_acl("pfxha-admin", "admin-pw", all=True)
WORLD = make_acl("world", "anyone", read=True)
LAYOUT = [member_acl("c1", "old"), member_acl("c2", "pw2"), ADMIN, WORLD]


def test_begin_adds_the_new_entry_next_to_the_old_one() -> None:
    both = with_new_entry(LAYOUT, "c1", "new")
    assert member_acl("c1", "old") in both
    assert member_acl("c1", "new") in both
    assert set(LAYOUT) <= set(both)
    assert with_new_entry(both, "c1", "new") == both  # idempotent
    # A node that does not list the user is left alone (not a grant in disguise).
    assert with_new_entry([ADMIN, WORLD], "c1", "new") == [ADMIN, WORLD]


def test_finish_keeps_only_the_new_entry_of_that_user() -> None:
    done = without_old_entries(with_new_entry(LAYOUT, "c1", "new"), "c1", "new")
    assert done == [member_acl("c1", "new"), member_acl("c2", "pw2"), ADMIN, WORLD]


def _member(pid: int, started: str) -> MemberInfo:
    return MemberInfo(name="c1", host="h1", pid=pid, started_at=started)


MARKER = RotationMarker("c1", "2026-12-02T21:00:00Z", ("h1", 100, "2026-12-02T20:00:00.000Z"))


def test_finish_waits_for_the_process_that_held_the_old_password_to_be_replaced() -> None:
    same = _member(100, "2026-12-02T20:00:00.000Z")
    assert "still runs the process" in (finish_problem(MARKER, same, []) or "")
    assert finish_problem(MARKER, same, [], force=True) is None
    assert finish_problem(MARKER, _member(101, "2026-12-02T21:05:00.000Z"), []) is None
    assert finish_problem(MARKER, None, []) is None  # not running: starts with the new file


def test_finish_needs_a_begin_and_the_new_entry_everywhere() -> None:
    assert "no rotation was begun" in (finish_problem(None, None, []) or "")
    missing = finish_problem(MARKER, None, ["/pfxha/p/epoch"], force=True)
    assert "/pfxha/p/epoch" in (missing or "")


def test_marker_round_trips_and_refuses_junk() -> None:
    assert RotationMarker.parse(MARKER.to_json()) == MARKER
    assert RotationMarker.parse(b"not json") is None
    assert RotationMarker.parse(b'{"user": 3}') is None
    bare = RotationMarker("c1", "t", None)
    assert RotationMarker.parse(bare.to_json()) == bare
