"""Kazoo clients, digest ACLs and the cluster's persistent nodes.

    client = make_client(cfg)                      # not started; auth added if configured
    acl = cluster_acl(cfg.auth_digest)             # connector identities write, world reads
    ensure_layout(client, ClusterPaths("lab"), acl)

With credentials every node a connector creates gets the ACL
``digest:<user>:<hash>`` (READ|WRITE|CREATE|DELETE, never ADMIN) plus
``world:anyone`` (read only): an unauthenticated client can read and watch but
gets NoAuth on create/delete. With one identity per connector the operator
provisions the layout listing every member (:mod:`election._acl`); a
connector that finds an existing layout node whose ACL is not the expected one
(world may write, another scheme, its own identity missing or with ADMIN)
refuses to start, naming the path. Without credentials the nodes are open
(OPEN_ACL_UNSAFE) and a warning is logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NoAuthError, NodeExistsError, OperationTimeoutError
from kazoo.retry import KazooRetry
from kazoo.security import OPEN_ACL_UNSAFE, make_acl
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from election._acl import acl_problem, layout_paths, member_acl, shared_acl
from election._config import ElectionConfig
from election._connect import BoundedConnectHandler, connect_bound
from election._errors import NotAuthorizedError
from election._paths import ClusterPaths

__all__ = ["cluster_acl", "ensure_layout", "make_client", "transient_zk_retry"]

log = logging.getLogger("pfxha.election")

# Named retry policy: a connection hiccup while creating the persistent layout.
transient_zk_retry = retry(
    retry=retry_if_exception_type((ConnectionLoss, OperationTimeoutError)),
    wait=wait_exponential(multiplier=0.05, max=1.0),
    stop=stop_after_attempt(8),
    reraise=True,
)


def cluster_acl(auth_digest: tuple[str, str] | None) -> list[Any]:
    if auth_digest is None:
        return list(OPEN_ACL_UNSAFE)
    user, password = auth_digest
    return [member_acl(user, password), make_acl("world", "anyone", read=True)]


def make_client(
    hosts: str,
    *,
    session_timeout: float,
    auth_digest: tuple[str, str] | None = None,
    reconnect_max_delay: float = 0.2,
) -> KazooClient:
    """A kazoo client whose reconnects retry quickly and forever (we handle LOST ourselves).

    Its TCP connects give up after ``session_timeout / len(hosts)``
    (:mod:`election._connect`): a crashed server must not cost a whole session.
    """
    auth = [("digest", f"{auth_digest[0]}:{auth_digest[1]}")] if auth_digest else None
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        handler=BoundedConnectHandler(connect_bound(hosts, session_timeout)),
        auth_data=auth,
        default_acl=cluster_acl(auth_digest),
        connection_retry=KazooRetry(
            max_tries=-1, delay=0.02, backoff=2, max_jitter=0.02, max_delay=reconnect_max_delay
        ),
        # Commands are not retried inside kazoo: the elector's loop is the retry, and a
        # command that silently waits out a reconnect would hide a stale lease.
        command_retry=None,
    )


def client_for(cfg: ElectionConfig) -> KazooClient:
    return make_client(
        cfg.hosts,
        session_timeout=cfg.session_timeout,
        auth_digest=cfg.auth_digest,
        reconnect_max_delay=cfg.reconnect_max_delay,
    )


@transient_zk_retry
def ensure_layout(client: KazooClient, paths: ClusterPaths, acl: Sequence[Any]) -> None:
    """Create the persistent nodes (``members``, ``election``, ``history``, ``epoch`` = 0,
    ``yields``) if missing.

    An existing node whose ACL is not what ``acl``'s identity expects raises
    :class:`NotAuthorizedError` naming the path (:func:`election._acl.acl_problem`).
    """
    # The shared root lets any client add a cluster; each cluster's own nodes are fenced.
    root_acl = (
        list(OPEN_ACL_UNSAFE)
        if acl == OPEN_ACL_UNSAFE
        else [*acl, make_acl("world", "anyone", read=True, create=True)]
    )
    try:
        for path in (paths.root, paths.base, paths.members, paths.election):
            if client.exists(path) is None:
                with contextlib.suppress(NodeExistsError):
                    client.create(path, b"", acl=root_acl if path == paths.root else list(acl))
        if client.exists(paths.epoch) is None:
            with contextlib.suppress(NodeExistsError):
                client.create(paths.epoch, b"0", acl=list(acl))
        for path in (paths.yields, paths.history):
            if client.exists(path) is None:
                # Clusters laid out before the yield budget or the history: shared like
                # the cluster node (every member writes under them).
                shared = shared_acl(client.get_acls(paths.base)[0], acl)
                if shared is None:
                    raise NotAuthorizedError(
                        f"ZooKeeper node {path} is missing and only the operator can "
                        "create it with the cluster's ACL (every member on it): have the "
                        "operator provision the layout (election.provision)"
                    )
                with contextlib.suppress(NodeExistsError):
                    client.create(path, b"", acl=shared)
        own_user = next((e.id.id.split(":")[0] for e in acl if e.id.scheme == "digest"), None)
        for path in layout_paths(paths):
            problem = acl_problem(client.get_acls(path)[0], own_user)
            if problem is not None:
                raise NotAuthorizedError(
                    f"ZooKeeper node {path} has an ACL this connector does not accept: "
                    f"{problem}. Someone else created or changed it; have the operator "
                    "set the cluster's ACL (pfxha members provision) or use another "
                    "cluster name"
                )
    except NoAuthError as exc:
        raise NotAuthorizedError(
            f"ZooKeeper refused to create the layout under {paths.base}: NoAuth "
            "(credentials missing or not a connector identity)"
        ) from exc
