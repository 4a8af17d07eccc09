"""What must hold before a drill injects its first fault.

    why = paused_refusal(read_cluster_status(lab.zk.hosts, lab.cluster), lab.zk.hosts)
    if why is not None:
        raise click.ClickException(why)

A paused cluster (``pfxha pause``) replaces no crashed leader on purpose: every
failover round would end in "no new leader" and the drill would report
violations of an invariant that maintenance suspends. So the drill refuses,
saying how to end the pause.
"""

from __future__ import annotations

from election import ClusterStatus

__all__ = ["paused_refusal"]


def paused_refusal(status: ClusterStatus, hosts: str) -> str | None:
    """Why a drill must not run against this cluster, or None if it may."""
    paused = status.paused
    if paused is None:
        return None
    why = f" ({paused.reason})" if paused.reason else ""
    return (
        f"cluster {status.cluster!r} is paused since {paused.paused_at or '?'}{why}: "
        "automatic failover is off, so every failover round would fail; run "
        f"`pfxha resume --hosts {hosts} --cluster {status.cluster} --auth-file FILE` first"
    )
