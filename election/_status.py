"""Reading a cluster's state and asking for a switchover, from ZooKeeper alone.

status = read_cluster_status("127.0.0.1:2181", "lab")      # or an open KazooClient
status.leader.name, status.epoch, [m.name for m in status.members]
request_switchover(client, "lab", to="c2")                 # the leader hands over
pause_cluster(client, "lab", reason="CA maintenance")       # automatic failover off
resume_cluster(client, "lab")                              # and on again
request_failover(client, "lab", to="c2", force=True)       # depose the leader for c2
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NodeExistsError, NoNodeError

from election._errors import ElectionError, NotAuthorizedError, SwitchoverError
from election._failover import FailoverKind, FailoverPlan, plan_failover
from election._model import (
    Candidate,
    ClusterStatus,
    LeaderInfo,
    MemberInfo,
    PauseInfo,
    SwitchoverRequest,
    utc_now_iso,
)
from election._paths import ClusterPaths
from election._zk import cluster_acl, make_client

__all__ = [
    "open_client",
    "pause_cluster",
    "read_cluster_status",
    "request_failover",
    "request_switchover",
    "resume_cluster",
]


@contextlib.contextmanager
def open_client(
    hosts: str,
    *,
    auth_digest: tuple[str, str] | None = None,
    timeout: float = 10.0,
    session_timeout: float = 5.0,
) -> Iterator[KazooClient]:
    """A started client for one-off reads and requests (closed on exit)."""
    client = make_client(hosts, session_timeout=session_timeout, auth_digest=auth_digest)
    client.start(timeout=timeout)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def read_cluster_status(zk: KazooClient | str, cluster: str) -> ClusterStatus:
    """Members, leader, epoch and election line of ``cluster``; ``zk`` is a client or hosts."""
    if isinstance(zk, str):
        with open_client(zk) as client:
            return _read(client, cluster)
    return _read(zk, cluster)


def _read(client: KazooClient, cluster: str) -> ClusterStatus:
    paths = ClusterPaths(cluster)
    members: list[MemberInfo] = []
    with contextlib.suppress(NoNodeError):
        for name in sorted(client.get_children(paths.members)):
            with contextlib.suppress(NoNodeError):
                raw, _ = client.get(paths.member(name))
                members.append(MemberInfo.parse(name, raw))
    leader: LeaderInfo | None = None
    with contextlib.suppress(NoNodeError):
        raw, stat = client.get(paths.leader)
        leader = LeaderInfo.parse(raw, czxid=stat.czxid, session_id=stat.ephemeralOwner)
    epoch = 0
    with contextlib.suppress(NoNodeError, ValueError):
        epoch = int(client.get(paths.epoch)[0] or b"0")
    line: tuple[Candidate, ...] = ()
    with contextlib.suppress(NoNodeError):
        parsed = (Candidate.parse(n) for n in client.get_children(paths.election))
        line = tuple(sorted(c for c in parsed if c is not None))
    request: SwitchoverRequest | None = None
    with contextlib.suppress(NoNodeError):
        raw, stat = client.get(paths.switchover)
        request = SwitchoverRequest.parse(raw, version=stat.version)
    paused: PauseInfo | None = None
    with contextlib.suppress(NoNodeError):
        paused = PauseInfo.parse(client.get(paths.pause)[0])
    return ClusterStatus(
        cluster=cluster,
        members=tuple(members),
        leader=leader,
        epoch=epoch,
        line=line,
        switchover=request,
        paused=paused,
    )


def request_switchover(
    client: KazooClient,
    cluster: str,
    to: str | None = None,
    *,
    auth_digest: tuple[str, str] | None = None,
) -> ClusterStatus:
    """Write the switchover request the leader watches; returns the status it was based on.

    Raises :class:`SwitchoverError` when nobody leads, ``to`` is not an eligible
    member in the election line, or ``to`` already leads.
    """
    status = _read(client, cluster)
    if status.paused is not None:
        raise SwitchoverError(
            f"cluster {cluster!r} is paused: nobody would take the lease the leader hands "
            "over (run `pfxha resume` first)"
        )
    if status.leader is None:
        raise SwitchoverError(f"cluster {cluster!r} has no leader to switch over from")
    if to is not None:
        if to == status.leader.name:
            raise SwitchoverError(f"{to} already leads cluster {cluster!r}")
        if not any(c.name == to for c in status.line):
            eligible = sorted({c.name for c in status.line if c.name != status.leader.name})
            raise SwitchoverError(
                f"{to} is not an eligible member of {cluster!r} (eligible: "
                f"{', '.join(eligible) or 'none'}; nofailover members never lead)"
            )
    elif not any(c.name != status.leader.name for c in status.line):
        raise SwitchoverError(f"cluster {cluster!r} has no standby that could take over")
    paths = ClusterPaths(cluster)
    data = SwitchoverRequest(to=to, requested_at=utc_now_iso()).to_json()
    with _authorized(paths, "the switchover request"):
        try:
            client.create(paths.switchover, data, acl=cluster_acl(auth_digest))
        except NodeExistsError:
            client.set(paths.switchover, data)
    return status


def request_failover(
    client: KazooClient,
    cluster: str,
    to: str,
    *,
    force: bool = False,
    auth_digest: tuple[str, str] | None = None,
) -> tuple[ClusterStatus, FailoverPlan]:
    """Hand the lease to ``to`` without the leader's help (see :mod:`election._failover`).

    Raises :class:`SwitchoverError` when the plan refuses, or when the cluster
    changed between the read and the write (nothing was written then).
    """
    status = _read(client, cluster)
    plan = plan_failover(status, to, force=force)
    if plan.kind is FailoverKind.REFUSE:
        raise SwitchoverError(plan.reason)
    paths = ClusterPaths(cluster)
    request = SwitchoverRequest(to=to, requested_at=utc_now_iso()).to_json()
    txn = client.transaction()
    if plan.kind is FailoverKind.FORCE:
        assert status.leader is not None
        stat = client.exists(paths.leader)
        if stat is None or stat.czxid != status.leader.czxid:
            raise SwitchoverError("the leader changed while planning the failover; run it again")
        txn.delete(paths.leader, version=stat.version)
    if status.switchover is not None:
        txn.set_data(paths.switchover, request, version=status.switchover.version)
    else:
        txn.create(paths.switchover, request, acl=cluster_acl(auth_digest))
    results = txn.commit()
    failed = [r for r in results if isinstance(r, Exception)]
    if any(isinstance(r, NoAuthError) for r in failed):
        raise _not_authorized(paths, "the failover")
    if failed:
        raise SwitchoverError("the cluster changed while requesting the failover; run it again")
    return status, plan


def pause_cluster(
    client: KazooClient,
    cluster: str,
    reason: str = "",
    *,
    auth_digest: tuple[str, str] | None = None,
) -> PauseInfo | None:
    """Create ``/pause``: the leader leads on, nobody takes over until :func:`resume_cluster`.

    Returns the pause already in place (left as it is), or None if this call paused.
    ``/pause`` carries the pausing identity's ACL like ``/switchover``: nobody rewrites
    it, and with per-member identities any member (or the admin) can still resume,
    since ZooKeeper checks DELETE on the cluster node, which lists them all.
    """
    paths = ClusterPaths(cluster)
    if client.exists(paths.base) is None:
        raise ElectionError(f"cluster {cluster!r} does not exist in ZooKeeper ({paths.base})")
    with _authorized(paths, "the pause"):
        try:
            info = PauseInfo(paused_at=utc_now_iso(), reason=reason)
            client.create(paths.pause, info.to_json(), acl=cluster_acl(auth_digest))
        except NodeExistsError:
            with contextlib.suppress(NoNodeError):
                return PauseInfo.parse(client.get(paths.pause)[0])
    return None


def resume_cluster(client: KazooClient, cluster: str) -> bool:
    """Delete ``/pause`` (automatic failover on again); False if the cluster was not paused."""
    paths = ClusterPaths(cluster)
    with _authorized(paths, "the resume"):
        try:
            client.delete(paths.pause)
        except NoNodeError:
            return False
    return True


@contextlib.contextmanager
def _authorized(paths: ClusterPaths, what: str) -> Iterator[None]:
    try:
        yield
    except NoAuthError as exc:
        raise _not_authorized(paths, what) from exc


def _not_authorized(paths: ClusterPaths, what: str) -> NotAuthorizedError:
    return NotAuthorizedError(
        f"ZooKeeper refused {what} under {paths.base}: NoAuth (give a connector's "
        "ZooKeeper credentials: --auth-file FILE holding USER:PASSWORD, mode 0600)"
    )
