"""Rotating a member's ZooKeeper digest password without lockout (``pfxha rotate-zk-auth``).

    begin_rotation(admin_client, paths, "c1", new_password)    # old and new both valid
    # restart c1 with the new password in its auth_password_file
    finish_rotation(admin_client, paths, "c1", new_password)   # only the new one left

A digest ACL entry is ``user:base64(sha1(user:password))``, and ZooKeeper lets a
session in when any entry matches one of its identities, so two entries for the
same user, the old password's and the new one's, make both passwords valid.
:func:`begin_rotation` adds the new entry to every node the member needs (the
layout's persistent nodes, :func:`election._acl.layout_paths`) next to the
old one (a ``switchover`` or ``pause`` node is only ever deleted, which the
parent's ACL decides), and leaves a marker
``/pfxha/<cluster>/rotation-<user>`` that records which process of the member
was running (host, pid, start time from its member node). The member's own
ephemeral nodes carry only the identity its session was made with; no one else
writes them, and a restarted member makes new ones with the new password.

:func:`finish_rotation` removes every entry of the user but the new password's,
and only when :func:`finish_problem` finds nothing wrong: a rotation was begun,
the new entry is on every node, and the member process that ran at begin has
been replaced (another pid or start time, or the member is not running). A
process that merely lost its session and made a new one still holds the old
password: the check looks at the process, not the session. ``force`` skips
the process check (a member that will be started later with the new file).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.security import ACL, make_acl

from election._acl import _edit_acls, _user, layout_paths, member_acl
from election._errors import RotationError
from election._model import MemberInfo
from election._paths import ClusterPaths

__all__ = [
    "RotationMarker",
    "begin_rotation",
    "finish_problem",
    "finish_rotation",
    "rotation_path",
    "with_new_entry",
    "without_old_entries",
]


def rotation_path(paths: ClusterPaths, user: str) -> str:
    return f"{paths.base}/rotation-{user}"


@dataclass(frozen=True)
class RotationMarker:
    """What :func:`begin_rotation` saw: when, and which process of the member ran."""

    user: str
    begun_at: str
    process: tuple[str, int, str] | None  # (host, pid, started_at) of the running member

    def to_json(self) -> bytes:
        process = list(self.process) if self.process else None
        data = {"user": self.user, "begun_at": self.begun_at, "process": process}
        return json.dumps(data).encode()

    @classmethod
    def parse(cls, raw: bytes) -> RotationMarker | None:
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str):
            return None
        process = data.get("process")
        proc: tuple[str, int, str] | None = None
        if isinstance(process, list) and len(process) == 3 and isinstance(process[1], int):
            proc = (str(process[0]), process[1], str(process[2]))
        return cls(data["user"], str(data.get("begun_at") or ""), proc)


def with_new_entry(acl: Sequence[ACL], user: str, new_password: str) -> list[ACL]:
    """``acl`` with the new password's entry for ``user`` added (nothing removed)."""
    entry = member_acl(user, new_password)
    if entry in acl or not any(_user(e) == user for e in acl):
        return list(acl)  # already there, or the user is not a member of this node
    return [entry, *acl]


def without_old_entries(acl: Sequence[ACL], user: str, new_password: str) -> list[ACL]:
    """``acl`` with every entry of ``user`` but the new password's removed."""
    keep = member_acl(user, new_password).id
    return [e for e in acl if _user(e) != user or e.id == keep]


def finish_problem(
    marker: RotationMarker | None,
    member: MemberInfo | None,
    missing_new: Sequence[str],
    *,
    force: bool = False,
) -> str | None:
    """Why removing the old password now could lock the member out; None when it cannot."""
    if marker is None:
        return "no rotation was begun for this member (run --phase begin first)"
    if missing_new:
        return f"the new password is not on the ACL of {', '.join(missing_new)} (run begin again)"
    if force or member is None or marker.process is None:
        return None
    if (member.host, member.pid, member.started_at) == marker.process:
        return (
            f"{marker.user} still runs the process that ran when the rotation began "
            f"(host {member.host}, pid {member.pid}, started {member.started_at}): it holds "
            "the old password; restart it with the new one first (a leader: switchover first)"
        )
    return None


def _member(client: KazooClient, paths: ClusterPaths, name: str) -> MemberInfo | None:
    try:
        raw, _ = client.get(paths.member(name))
    except NoNodeError:
        return None
    return MemberInfo.parse(name, raw)


def begin_rotation(
    client: KazooClient,
    paths: ClusterPaths,
    user: str,
    new_password: str,
    *,
    admin_user: str,
    name: str | None = None,
) -> list[str]:
    """Make ``new_password`` valid for ``user`` next to the old one (as the admin).

    Returns the paths whose ACL changed. Idempotent; a second begin keeps the first
    marker (the process that ran then is the one that must be replaced).
    """
    if not any(_user(e) == user for e in client.get_acls(paths.epoch)[0]):
        raise RotationError(f"{user} is not on the cluster's ACL (grant-member first)")
    changed = [
        path
        for path in layout_paths(paths)
        if _edit_acls(client, path, lambda acl: with_new_entry(acl, user, new_password))
    ]
    member = _member(client, paths, name or user)
    process = (member.host, member.pid, member.started_at) if member else None
    begun = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # Only the admin may change or delete the marker; anyone may read it.
    admin = [a for a in client.get_acls(paths.epoch)[0] if _user(a) == admin_user]
    if not admin:
        raise RotationError(f"the admin identity {admin_user!r} is not on the cluster's ACL")
    marker_acl = [*admin, make_acl("world", "anyone", read=True)]
    with contextlib.suppress(NodeExistsError):
        client.create(
            rotation_path(paths, user),
            RotationMarker(user, begun, process).to_json(),
            acl=marker_acl,
        )
    return changed


def finish_rotation(
    client: KazooClient,
    paths: ClusterPaths,
    user: str,
    new_password: str,
    *,
    name: str | None = None,
    force: bool = False,
) -> list[str]:
    """Remove ``user``'s old password from every ACL, if that locks no one out.

    :class:`RotationError` says why not. Returns the paths whose ACL changed.
    """
    try:
        marker = RotationMarker.parse(client.get(rotation_path(paths, user))[0])
    except NoNodeError:
        marker = None
    entry = member_acl(user, new_password)
    targets = layout_paths(paths)
    missing = [p for p in targets if entry not in client.get_acls(p)[0]]
    problem = finish_problem(marker, _member(client, paths, name or user), missing, force=force)
    if problem is not None:
        raise RotationError(problem)
    changed = [
        path
        for path in targets
        if _edit_acls(client, path, lambda acl: without_old_entries(acl, user, new_password))
    ]
    with contextlib.suppress(NoNodeError):
        client.delete(rotation_path(paths, user))
    return changed
