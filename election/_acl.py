"""Per-member ZooKeeper identities: the cluster's ACLs, who is on them, and revocation.

    acl = layout_acl({"c1": pw1, "c2": pw2}, admin=("pfxha-admin", admin_pw))
    provision(admin_client, ClusterPaths("prod"), acl)   # create or re-ACL the layout
    grant_member(admin_client, paths, "c4", pw4)         # one more member
    report = revoke_member(admin_client, paths, "c2")    # off every ACL, its nodes deleted
    acl_problem(client.get_acls(path)[0], own_user="c1") # None, or why the ACL is wrong

Each connector has its own digest identity (user = its name). The layout's
persistent nodes (``/pfxha/<cluster>``, ``members``, ``election``, ``epoch``,
``yields``, ``history``) list every current member with READ|WRITE|CREATE|DELETE,
the operator's admin identity with ALL, and ``world:anyone`` with READ. Connectors never
get ADMIN: no member can change an ACL (lock the others out, let itself back
in). A member's own ephemeral nodes carry only its own identity (and world
READ): no other member can rewrite them, though any member can delete them
(DELETE is checked on the parent, and takeover needs it). Revoking a member
removes its entry from every persistent node, so its next create, set or
delete is NoAuth, and deletes its member, election and leader nodes so that
it leaves the election at once. Done with the admin identity, the only one
whose ADMIN permission ``setACL`` accepts.

Why digest and not x509: Debian's ZooKeeper 3.8 can authenticate clients by
TLS certificate (Netty is packaged), but its x509 ACLs also name one identity
per entry, so revocation is the same ACL edit, and it would need a TLS
client port, keystores on every node and kazoo's SSL options on every client
for no gain in what a revoked member can do. Digest identities need nothing
but a password file per member.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.security import ACL, Permissions, make_acl, make_digest_acl

from election._model import Candidate
from election._paths import ClusterPaths

__all__ = [
    "MEMBER_PERMS",
    "RevokeReport",
    "acl_problem",
    "grant_member",
    "layout_acl",
    "layout_paths",
    "member_acl",
    "provision",
    "revoke_member",
    "shared_acl",
]

# What a member may do on the layout's nodes: everything but ADMIN.
MEMBER_PERMS = Permissions.READ | Permissions.WRITE | Permissions.CREATE | Permissions.DELETE
_PERM_NAMES = {
    Permissions.READ: "READ",
    Permissions.WRITE: "WRITE",
    Permissions.CREATE: "CREATE",
    Permissions.DELETE: "DELETE",
    Permissions.ADMIN: "ADMIN",
}


def _perm_words(perms: int) -> str:
    return "|".join(word for bit, word in _PERM_NAMES.items() if perms & bit) or "none"


def member_acl(user: str, password: str) -> ACL:
    """The entry of one member: its digest, every permission but ADMIN."""
    return make_digest_acl(user, password, read=True, write=True, create=True, delete=True)


def layout_acl(members: Mapping[str, str], admin: tuple[str, str]) -> list[ACL]:
    """Members (user -> password), the admin with ALL, and world READ."""
    return [
        *(member_acl(user, password) for user, password in sorted(members.items())),
        make_digest_acl(admin[0], admin[1], all=True),
        make_acl("world", "anyone", read=True),
    ]


def layout_paths(paths: ClusterPaths) -> tuple[str, ...]:
    """The persistent nodes whose ACL lists the members."""
    return (
        paths.base,
        paths.members,
        paths.election,
        paths.epoch,
        paths.yields,
        paths.history,
    )


def _user(entry: ACL) -> str | None:
    return entry.id.id.split(":", 1)[0] if entry.id.scheme == "digest" else None


def shared_acl(current: Sequence[ACL], own: Sequence[ACL]) -> list[ACL] | None:
    """The cluster node's ACL ``current`` for a new node every member writes under.

    ZooKeeper redacts digest hashes for a reader without ADMIN (``user:x``): a node
    created with that ACL as read would let nobody in. Our own redacted entry is
    replaced by the real one from ``own``; None when another identity is redacted
    (its hash is unknown here: the operator provisions, :func:`provision`).
    """
    real = {user: entry for entry in own if (user := _user(entry)) is not None}
    shared: list[ACL] = []
    for entry in current:
        user = _user(entry)
        if user is not None and entry.id.id == f"{user}:x":
            if user not in real:
                return None
            entry = ACL(entry.perms, real[user].id)
        shared.append(entry)
    return shared


def acl_problem(acl: Sequence[ACL], own_user: str | None) -> str | None:
    """Why ``acl`` is not what a connector's cluster node must carry; None when it is.

    Expected: ``world:anyone`` READ at most; no scheme but digest and world;
    ``own_user`` listed with READ|WRITE|CREATE|DELETE and without ADMIN (ADMIN
    belongs to the operator's identity). Digest hashes may be redacted (a
    non-admin reader sees ``user:x``): only user names are compared. Without
    credentials (``own_user`` None) nothing is expected.
    """
    if own_user is None:
        return None
    own = [entry for entry in acl if _user(entry) == own_user]
    for entry in acl:
        scheme, ident = entry.id.scheme, entry.id.id
        if scheme == "world" and entry.perms & ~Permissions.READ:
            return f"world:{ident} may {_perm_words(entry.perms)} (only READ is allowed)"
        if scheme not in ("world", "digest"):
            return f"grants {_perm_words(entry.perms)} to {scheme}:{ident} (not a member)"
    if not own:
        return f"does not list this connector's identity {own_user!r}"
    perms = 0
    for entry in own:
        perms |= entry.perms
    if perms & Permissions.ADMIN:
        return f"grants ADMIN to this connector's identity {own_user!r} (only the admin's)"
    if perms & MEMBER_PERMS != MEMBER_PERMS:
        return f"gives {own_user!r} only {_perm_words(perms)} (READ|WRITE|CREATE|DELETE needed)"
    return None


def provision(client: KazooClient, paths: ClusterPaths, acl: Sequence[ACL]) -> None:
    """Create the layout with ``acl`` (``epoch`` = 0), or set ``acl`` on what exists.

    ``client`` must hold the admin identity of ``acl`` (setACL needs ADMIN).
    """
    if client.exists(paths.root) is None:
        with contextlib.suppress(NodeExistsError):
            client.create(paths.root, b"")
    for path in layout_paths(paths):
        if client.exists(path) is None:
            with contextlib.suppress(NodeExistsError):
                client.create(path, b"0" if path == paths.epoch else b"", acl=list(acl))
                continue
        client.set_acls(path, list(acl))


@dataclass
class RevokeReport:
    """What :func:`revoke_member` changed: re-ACLed paths and deleted nodes."""

    user: str
    acl_paths: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _edit_acls(client: KazooClient, path: str, edit: Callable[[list[ACL]], list[ACL]]) -> bool:
    """Set ``edit(current ACL)`` on ``path``, version-checked; False when nothing changes."""
    for _ in range(5):
        current, stat = client.get_acls(path)
        wanted = edit(list(current))
        if wanted == list(current):
            return False
        try:
            client.set_acls(path, wanted, version=stat.aversion)
            return True
        except BadVersionError:
            continue  # someone else edited it meanwhile: read again
    raise RuntimeError(f"{path}: its ACL kept changing under us (5 tries)")


def _without(user: str) -> Callable[[list[ACL]], list[ACL]]:
    return lambda acl: [entry for entry in acl if _user(entry) != user]


def grant_member(client: KazooClient, paths: ClusterPaths, user: str, password: str) -> list[str]:
    """Add ``user`` to every layout node's ACL (as the admin); the paths changed."""
    entry = member_acl(user, password)
    drop = _without(user)
    return [
        path
        for path in layout_paths(paths)
        if _edit_acls(client, path, lambda acl: [entry, *drop(acl)])
    ]


def revoke_member(
    client: KazooClient, paths: ClusterPaths, user: str, *, name: str | None = None
) -> RevokeReport:
    """Remove ``user`` from every layout node's ACL, then delete member ``name``'s nodes.

    ``name`` (the member's connector name) defaults to ``user``. Its member node,
    its election nodes and ``/leader`` if it holds it are deleted in one
    transaction: a leader then loses its lease (it watches both) and cannot take
    it again (NoAuth), and the next in line sees the lease and the line free at
    once. The ACL reads and writes go out side by side (one round trip each), so
    the lease moves a few round trips after the call.
    """
    name = name or user
    report = RevokeReport(user)
    drop = _without(user)
    targets = (*layout_paths(paths), paths.switchover)
    reads = [(path, client.get_acls_async(path)) for path in targets]
    writes = []
    for path, pending in reads:
        try:
            current, stat = pending.get()
        except NoNodeError:
            continue
        if drop(list(current)) != list(current):
            writes.append((path, client.set_acls_async(path, drop(list(current)), stat.aversion)))
    for path, pending in writes:
        try:
            pending.get()
        except BadVersionError:  # edited meanwhile: the careful way for this one
            _edit_acls(client, path, drop)
        report.acl_paths.append(path)
    line, leader, member = (
        client.get_children_async(paths.election),
        client.get_async(paths.leader),
        client.exists_async(paths.member(name)),
    )
    present = [paths.member(name)] if member.get() is not None else []
    with contextlib.suppress(NoNodeError):
        for node in line.get():
            candidate = Candidate.parse(node)
            if candidate is not None and candidate.name == name:
                present.append(paths.candidate(node))
    with contextlib.suppress(NoNodeError, ValueError):
        if json.loads(leader.get()[0] or b"{}").get("name") == name:
            present.insert(0, paths.leader)
    txn = client.transaction()
    for path in present:
        txn.delete(path)
    if not any(isinstance(r, Exception) for r in txn.commit()):
        report.deleted = present
        return report
    for path in present:  # one vanished meanwhile (the session ended): one by one
        with contextlib.suppress(NoNodeError):
            client.delete(path)
            report.deleted.append(path)
    return report
