"""``pfxha status`` and ``pfxha switchover``: the cluster as ZooKeeper sees it.

    pfxha status --hosts 127.0.0.1:2181 --cluster lab [--json] [--auth-file FILE]
    pfxha switchover --hosts 127.0.0.1:2181 --cluster lab [--to c2] [--auth-file FILE]

Both talk to ZooKeeper alone (no connector needs to answer). ``--hosts``,
``--cluster`` and ``--auth`` may come from PFXHA_ZOOKEEPER_HOSTS, PFXHA_CLUSTER
and PFXHA_ZOOKEEPER_AUTH. ``--auth-file`` is a 0600 file holding
``USER:PASSWORD`` of a connector's ZooKeeper digest identity: switchover needs
it under digest ACLs (NoAuth otherwise); status only reads, which the ACLs
allow anyone, and takes it too so one command line shape serves both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import click
from kazoo.client import KazooClient
from rich.console import Console
from rich.table import Table

from election import (
    ClusterPaths,
    ElectionError,
    LeaderInfo,
    open_client,
    read_cluster_status,
    request_switchover,
)

__all__ = ["status", "switchover"]

_hosts_option = click.option(
    "--hosts",
    envvar="PFXHA_ZOOKEEPER_HOSTS",
    required=True,
    help="ZooKeeper connect string, e.g. 127.0.0.1:2181,127.0.0.1:2182.",
)
_cluster_option = click.option(
    "--cluster", envvar="PFXHA_CLUSTER", required=True, help="Cluster name (/pfxha/<cluster>)."
)


def _auth_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--auth`` and ``--auth-file``, the same on every command that talks to ZooKeeper."""
    command = click.option(
        "--auth-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="File (mode 0600) holding USER:PASSWORD of a connector's ZooKeeper digest "
        "identity; wins over --auth.",
    )(command)
    return click.option(
        "--auth",
        envvar="PFXHA_ZOOKEEPER_AUTH",
        default=None,
        help="USER:PASSWORD when the cluster uses digest ACLs "
        "(prefer PFXHA_ZOOKEEPER_AUTH or --auth-file: ps shows command lines).",
    )(command)


def _parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise click.BadParameter("expected USER:PASSWORD", param_hint="--auth")
    return user, password


def _resolve_auth(auth: str | None, auth_file: Path | None) -> tuple[str, str] | None:
    """The digest credentials from ``--auth-file`` (checked 0600) or ``--auth``."""
    if auth_file is not None:
        from connector.identity import InsecureFileError, check_private_file

        try:
            check_private_file(auth_file)
        except InsecureFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--auth-file") from None
        auth = auth_file.read_text().strip()
        try:
            return _parse_auth(auth)
        except click.BadParameter:
            raise click.BadParameter(
                f"{auth_file} must hold USER:PASSWORD", param_hint="--auth-file"
            ) from None
    return _parse_auth(auth)


@click.command()
@_hosts_option
@_cluster_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to reach ZooKeeper.")
@_auth_options
def status(
    hosts: str,
    cluster: str,
    as_json: bool,
    timeout: float,
    auth: str | None,
    auth_file: Path | None,
) -> None:
    """Members, who leads, the epoch and since when, each member's role."""
    auth_digest = _resolve_auth(auth, auth_file)
    try:
        with open_client(hosts, timeout=timeout, auth_digest=auth_digest) as client:
            result = read_cluster_status(client, cluster)
    except Exception as exc:
        raise click.ClickException(f"cannot read cluster {cluster!r} from {hosts}: {exc}") from exc
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


def _reach_cell(reach: dict[str, str]) -> str:
    """What a member says it reaches: "ok", or the targets it cannot reach (in red)."""
    if not reach:
        return "-"
    failing = sorted(target for target, word in reach.items() if word != "ok")
    if not failing:
        return "ok"
    return "[red]cannot reach " + ", ".join(failing) + "[/]"


@click.command()
@_hosts_option
@_cluster_option
@click.option("--to", "target", default=None, help="Member to hand over to (default: next).")
@_auth_options
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for the new leader.")
def switchover(
    hosts: str,
    cluster: str,
    target: str | None,
    auth: str | None,
    auth_file: Path | None,
    wait: float,
) -> None:
    """Hand the lease over now: the leader releases, TARGET (or the next in line) takes it."""
    auth_digest = _resolve_auth(auth, auth_file)
    try:
        with open_client(hosts, auth_digest=auth_digest) as client:
            before = request_switchover(client, cluster, target, auth_digest=auth_digest)
            assert before.leader is not None
            old = before.leader
            click.echo(
                f"switchover requested: {old.name} (epoch {old.epoch}) -> {target or 'next'}"
            )
            new = _wait_for_successor(client, ClusterPaths(cluster).leader, old, target, wait)
    except ElectionError as exc:  # SwitchoverError, NotAuthorizedError
        raise click.ClickException(str(exc)) from exc
    if new is None:
        raise click.ClickException(f"no new leader within {wait:.0f}s; see `pfxha status`")
    click.echo(f"{new.name} leads with epoch {new.epoch}")


def _wait_for_successor(
    client: KazooClient, path: str, old: LeaderInfo, target: str | None, timeout: float
) -> LeaderInfo | None:
    """Watch /leader until a newer leader (the target, if given) holds it."""
    found: list[LeaderInfo] = []
    done = threading.Event()

    def on_change(data: bytes | None, _stat: object) -> bool:
        info = LeaderInfo.parse(data) if data else None
        if info is not None and info.epoch > old.epoch and target in (None, info.name):
            found.append(info)
            done.set()
            return False  # stop watching
        return True

    client.DataWatch(path, on_change)
    done.wait(timeout)
    return found[0] if found else None
