"""Kazoo clients, digest ACLs and the cluster's persistent nodes.

    client = make_client(cfg)                      # not started; auth added if configured
    acl = cluster_acl(cfg.auth_digest)             # connector identities write, world reads
    ensure_layout(client, ClusterPaths("lab"), acl)

With credentials every node under ``/pfxha/<cluster>`` gets the ACL
``digest:<user>:<hash>`` (all permissions) plus ``world:anyone`` (read only):
an unauthenticated client can read and watch but gets NoAuth on create/delete.
Without credentials the nodes are open (OPEN_ACL_UNSAFE) and a warning is logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NoAuthError, NodeExistsError, OperationTimeoutError
from kazoo.retry import KazooRetry
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from election._config import ElectionConfig
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
    return [make_digest_acl(user, password, all=True), make_acl("world", "anyone", read=True)]


def make_client(
    hosts: str,
    *,
    session_timeout: float,
    auth_digest: tuple[str, str] | None = None,
    reconnect_max_delay: float = 0.2,
) -> KazooClient:
    """A kazoo client whose reconnects retry quickly and forever (we handle LOST ourselves)."""
    auth = [("digest", f"{auth_digest[0]}:{auth_digest[1]}")] if auth_digest else None
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout,
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
    """Create the persistent nodes (``members``, ``election``, ``history``, ``epoch`` = 0)
    if missing."""
    # The shared root lets any client add a cluster; each cluster's own nodes are fenced.
    root_acl = (
        list(OPEN_ACL_UNSAFE)
        if acl == OPEN_ACL_UNSAFE
        else [*acl, make_acl("world", "anyone", read=True, create=True)]
    )
    try:
        for path in (paths.root, paths.base, paths.members, paths.election, paths.history):
            if client.exists(path) is None:
                with contextlib.suppress(NodeExistsError):
                    client.create(path, b"", acl=root_acl if path == paths.root else list(acl))
        if client.exists(paths.epoch) is None:
            with contextlib.suppress(NodeExistsError):
                client.create(paths.epoch, b"0", acl=list(acl))
    except NoAuthError as exc:
        raise NotAuthorizedError(
            f"ZooKeeper refused to create the layout under {paths.base}: NoAuth "
            "(credentials missing or not a connector identity)"
        ) from exc
