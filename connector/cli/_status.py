"""``pfxha status``, ``switchover`` and ``failover``: the cluster as ZooKeeper sees it.

    pfxha status --hosts 127.0.0.1:2181 --cluster lab [--json] [--auth-file FILE]
    pfxha switchover --hosts 127.0.0.1:2181 --cluster lab [--to c2] [--auth-file FILE]
    pfxha failover --hosts 127.0.0.1:2181 --cluster lab --to c2 [--force] [--auth-file FILE]

They talk to ZooKeeper alone (no connector needs to answer) and take the
options every cluster command shares (:mod:`connector.cli._zk`: ``--hosts``,
``--cluster``, ``--auth-file``/``--auth``, ``--timeout``, ``-v``).
``--auth-file`` is a 0600 file holding ``USER:PASSWORD`` of a connector's
ZooKeeper digest identity: switchover needs it under digest ACLs (NoAuth
otherwise); status only reads, which the ACLs allow anyone, and takes it too so
one command line shape serves both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import click
from kazoo.client import KazooClient
from rich.console import Console
from rich.table import Table

from connector.cli._zk import ZkTarget, cluster_command, connect
from election import (
    ClusterPaths,
    LeaderInfo,
    read_cluster_status,
    request_failover,
    request_switchover,
)

__all__ = ["failover", "status", "switchover", "wait_for_leader"]


@click.command()
@cluster_command
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(target: ZkTarget, as_json: bool) -> None:
    """Members, who leads, the epoch and since when, each member's role."""
    cluster = target.cluster
    with connect(target) as client:
        result = read_cluster_status(client, cluster)
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    leader = data["leader"]
    console.print(
        f"cluster [bold]{cluster}[/]: "
        + (
            f"leader [bold green]{leader}[/] epoch {data['leader_epoch']} since {data['since']}"
            if leader
            else "[bold red]no leader[/]"
        )
        + f" (epoch counter {data['epoch']})"
    )
    table = Table(
        "member",
        "role",
        "reaches",
        "fast path",
        "host",
        "pid",
        "priority",
        "nofailover",
        "version",
        "started",
    )
    unavailable: list[str] = []
    for member in data["members"]:
        role = member["role"]
        style = {"leader": "bold green", "suspended": "yellow"}.get(role, "")
        # A standby's own word on whether it would notice the leader's crash at once.
        fast_path = str(member.get("fast_path") or "-")
        if fast_path == "unavailable":
            unavailable.append(f"{member['name']}: {member.get('fast_path_reason') or '?'}")
        table.add_row(
            member["name"],
            f"[{style}]{role}[/]" if style else role,
            _reach_cell(member.get("reach") or {}),
            f"[yellow]{fast_path}[/]" if fast_path == "unavailable" else fast_path,
            member["host"],
            str(member["pid"]),
            str(member["priority"]),
            "yes" if member["nofailover"] else "",
            member["version"],
            member["started_at"],
        )
    console.print(table)
    for line in unavailable:
        # A crash of the leader is then noticed only at the session timeout.
        console.print(f"fast path unavailable on {line}", markup=False, soft_wrap=True)
    if data["switchover"]:
        console.print(f"pending switchover: {data['switchover']}")
    if result.paused is not None:
        paused = result.paused
        console.print(
            f"[bold yellow]paused[/] since {paused.paused_at or '?'}"
            + (f" ({paused.reason})" if paused.reason else "")
            + ": automatic failover is off, a crashed leader is not replaced until "
            "`pfxha resume`",
            soft_wrap=True,
        )


def _reach_cell(reach: dict[str, str]) -> str:
    """What a member says it reaches: "ok", or the targets it cannot reach (in red)."""
    if not reach:
        return "-"
    failing = sorted(target for target, word in reach.items() if word != "ok")
    if not failing:
        return "ok"
    return "[red]cannot reach " + ", ".join(failing) + "[/]"


@click.command()
@cluster_command
@click.option("--to", "to", default=None, help="Member to hand over to (default: next).")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for the new leader.")
def switchover(target: ZkTarget, to: str | None, wait: float) -> None:
    """Hand the lease over now: the leader releases, TO (or the next in line) takes it."""
    cluster = target.cluster
    with connect(target) as client:
        before = request_switchover(client, cluster, to, auth_digest=target.auth_digest)
        assert before.leader is not None
        old = before.leader
        click.echo(f"switchover requested: {old.name} (epoch {old.epoch}) -> {to or 'next'}")
        new = wait_for_leader(
            client, cluster, lambda i: i.epoch > old.epoch and to in (None, i.name), wait
        )
    if new is None:
        raise click.ClickException(f"no new leader within {wait:.0f}s; see `pfxha status`")
    click.echo(f"{new.name} leads with epoch {new.epoch}")


@click.command()
@cluster_command
@click.option("--to", "to", required=True, help="Member to hand the lease to.")
@click.option(
    "--force",
    is_flag=True,
    help="Depose a leader that still holds its ZooKeeper session (hung or cut off); "
    "the epoch fences it.",
)
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for the new leader.")
def failover(target: ZkTarget, to: str, force: bool, wait: float) -> None:
    """Make TO the leader without the current leader's help (it may be unreachable)."""
    with connect(target) as client:
        before, plan = request_failover(
            client, target.cluster, to, force=force, auth_digest=target.auth_digest
        )
        click.echo(f"failover requested: {plan.reason}")
        floor = before.epoch
        new = wait_for_leader(
            client, target.cluster, lambda i: i.epoch > floor and i.name == to, wait
        )
    if new is None:
        raise click.ClickException(f"{to} does not lead after {wait:g}s; see `pfxha status`")
    click.echo(f"{new.name} leads with epoch {new.epoch}")


def wait_for_leader(
    client: KazooClient, cluster: str, accept: Callable[[LeaderInfo], bool], timeout: float
) -> LeaderInfo | None:
    """Watch /leader until a leader ``accept`` likes holds it; None after ``timeout``."""
    found: list[LeaderInfo] = []
    done = threading.Event()

    def on_change(data: bytes | None, _stat: object) -> bool:
        info = LeaderInfo.parse(data) if data else None
        if info is not None and accept(info):
            found.append(info)
            done.set()
            return False  # stop watching
        return True

    client.DataWatch(ClusterPaths(cluster).leader, on_change)
    done.wait(timeout)
    return found[0] if found else None
