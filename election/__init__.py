"""Leadership over ZooKeeper for pfxha: one active lease, fenced by an epoch.

Knows nothing about certificates::

    from election import ElectionConfig, ElectionObserver, Elector

    class Connector(ElectionObserver):
        def on_elected(self, epoch: int) -> None: ...      # start working, tag writes with epoch
        def on_demoted(self, reason: str) -> None: ...     # stop every side effect now

    elector = Elector(ElectionConfig(hosts="127.0.0.1:2181", cluster="lab", name="c1"),
                      observers=[Connector()])
    elector.start()
    if (epoch := elector.fresh_epoch()) is not None:       # before every side effect
        ...
    elector.stop()                                         # graceful handover

Observers are called from the elector's background thread. See docs/election.md
for the ZooKeeper layout (a public contract), the timing rules and the fast path.
"""

from election._acl import (
    RevokeReport,
    acl_problem,
    grant_member,
    layout_acl,
    provision,
    revoke_member,
)
from election._config import ElectionConfig
from election._elector import Elector
from election._epoch import MAX_EPOCH, parse_epoch
from election._errors import (
    ConfigError,
    ElectionError,
    NotAuthorizedError,
    RotationError,
    SwitchoverError,
)
from election._history import HISTORY_LENGTH, read_history
from election._model import (
    ClusterStatus,
    ElectionObserver,
    FastPath,
    HistoryEntry,
    LeaderInfo,
    MemberInfo,
    PauseInfo,
    Role,
    SwitchoverRequest,
)
from election._paths import ClusterPaths
from election._rotate import begin_rotation, finish_rotation
from election._status import (
    open_client,
    pause_cluster,
    read_cluster_status,
    request_failover,
    request_switchover,
    resume_cluster,
)
from election._yield_budget import HandOver, YieldBudget

__all__ = [
    "HISTORY_LENGTH",
    "MAX_EPOCH",
    "ClusterPaths",
    "ClusterStatus",
    "ConfigError",
    "ElectionConfig",
    "ElectionError",
    "ElectionObserver",
    "Elector",
    "FastPath",
    "HandOver",
    "HistoryEntry",
    "LeaderInfo",
    "MemberInfo",
    "NotAuthorizedError",
    "PauseInfo",
    "RevokeReport",
    "Role",
    "RotationError",
    "SwitchoverError",
    "SwitchoverRequest",
    "YieldBudget",
    "acl_problem",
    "begin_rotation",
    "finish_rotation",
    "grant_member",
    "layout_acl",
    "open_client",
    "parse_epoch",
    "pause_cluster",
    "provision",
    "read_cluster_status",
    "read_history",
    "request_failover",
    "request_switchover",
    "resume_cluster",
    "revoke_member",
]
