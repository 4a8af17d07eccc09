"""``pfxha pause``, ``pfxha resume`` and ``pfxha history``: maintenance and the record.

    pfxha pause   --hosts H --cluster C --auth-file FILE [--reason TEXT]
    pfxha resume  --hosts H --cluster C --auth-file FILE [--wait 10]
    pfxha history --hosts H --cluster C [--json]

``pause`` creates ``/pfxha/<C>/pause``: the leader keeps leading, no standby
takes over (a crashed leader is reported, event 5032, and not replaced),
``status`` says so and ``pfxha drill`` refuses to run. ``resume`` deletes it and
waits for a leader. ``history`` lists every kept leadership (epoch, member,
from, to, reason) from ``/pfxha/<C>/history``. All three take the options every
cluster command shares (:mod:`connector.cli._zk`).
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from connector.cli._status import wait_for_leader
from connector.cli._zk import ZkTarget, cluster_command, connect
from election import pause_cluster, read_cluster_status, read_history, resume_cluster

__all__ = ["history", "pause", "resume"]


@click.command()
@cluster_command
@click.option("--reason", default="", help="Why (shown by `pfxha status`).")
def pause(target: ZkTarget, reason: str) -> None:
    """Maintenance: the leader leads on, nobody takes over automatically until resumed."""
    with connect(target) as client:
        earlier = pause_cluster(client, target.cluster, reason, auth_digest=target.auth_digest)
        status = read_cluster_status(client, target.cluster)
    leader = status.leader
    leads = f"{leader.name} leads on (epoch {leader.epoch})" if leader else "nobody leads"
    if earlier is not None:
        click.echo(
            f"cluster {target.cluster} was already paused since {earlier.paused_at or '?'}"
            f"{f' ({earlier.reason})' if earlier.reason else ''}; {leads}"
        )
        return
    click.echo(
        f"cluster {target.cluster} paused: automatic failover off, {leads}; "
        "`pfxha resume` turns it back on"
    )


@click.command()
@cluster_command
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for a leader after resuming (0: do not wait).",
)
def resume(target: ZkTarget, wait: float) -> None:
    """End maintenance: automatic failover on again; wait until someone leads."""
    with connect(target) as client:
        was_paused = resume_cluster(client, target.cluster)
        leader = wait_for_leader(client, target.cluster, lambda _: True, wait) if wait else None
    state = "resumed: automatic failover on" if was_paused else "was not paused"
    if leader is not None:
        click.echo(f"cluster {target.cluster} {state}; {leader.name} leads (epoch {leader.epoch})")
    elif wait:
        raise click.ClickException(
            f"cluster {target.cluster} {state}, but nobody leads after {wait:g}s: "
            "see `pfxha status` (are any members running and eligible?)"
        )
    else:
        click.echo(f"cluster {target.cluster} {state}")


@click.command()
@cluster_command
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def history(target: ZkTarget, as_json: bool) -> None:
    """Every kept leadership, oldest first: epoch, member, from, to, reason."""
    with connect(target) as client:
        entries = read_history(client, target.cluster)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table("epoch", "member", "from", "to", "reason", title=f"cluster {target.cluster}")
    for e in entries:
        table.add_row(str(e.epoch), e.name, e.since, e.to or "-", e.reason)
    Console().print(table)
