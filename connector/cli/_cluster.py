"""``pfxha pause``, ``resume``, ``history``, ``show-config``: maintenance and the record.

    pfxha pause   --hosts H --cluster C --auth-file FILE [--reason TEXT]
    pfxha resume  --hosts H --cluster C --auth-file FILE [--wait 10]
    pfxha history --hosts H --cluster C [--json]
    pfxha history --hosts H --cluster C --serial X [--service URL --admin-token-file F] [--log F]
    pfxha show-config --hosts H --cluster C [--json]

``pause`` creates ``/pfxha/<C>/pause``: the leader keeps leading, no standby
takes over (a crashed leader is reported, event 5050, and not replaced),
``status`` says so and ``pfxha drill`` refuses to run. ``resume`` deletes it and
waits for a leader. ``history`` lists every kept leadership (epoch, member,
from, to, reason) from ``/pfxha/<C>/history``; with ``--serial`` it answers who
issued (or revoked) that certificate under which leadership
(:mod:`connector.cli._serial`). ``show-config`` lists each member's version
and configuration digest (from its member node) and marks the ones that
differ from the most common. All take the options every cluster
command shares (:mod:`connector.cli._zk`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from connector.cli._members import _secret
from connector.cli._serial import print_trace, service_records
from connector.cli._status import wait_for_leader
from connector.cli._zk import ZkTarget, cluster_command, connect
from connector.serial_trace import SerialRecord, parse_serial
from election import (
    MemberInfo,
    pause_cluster,
    read_cluster_status,
    read_history,
    resume_cluster,
)

__all__ = ["config_drift", "history", "pause", "resume", "show_config"]


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
@click.option(
    "--serial",
    default=None,
    help="Who issued/revoked this certificate serial (decimal, 0x hex or aa:bb), "
    "under which leadership: needs --service and/or --log.",
)
@click.option("--service", "service_url", default=None, help="The service's URL (with --serial).")
@click.option(
    "--admin-token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="0600 file with the service's admin token (with --service).",
)
@click.option(
    "--service-ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA that verifies the service's TLS certificate (with --service).",
)
@click.option(
    "--log",
    "logs",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A connector's JSON log to search for the serial's events (repeatable).",
)
def history(
    target: ZkTarget,
    as_json: bool,
    serial: str | None,
    service_url: str | None,
    admin_token_file: Path | None,
    service_ca_file: Path | None,
    logs: tuple[Path, ...],
) -> None:
    """Every kept leadership, oldest first: epoch, member, from, to, reason.

    With --serial: which connector issued (or revoked) that certificate, under
    which epoch, and that epoch's leadership.
    """
    service: list[SerialRecord] = []
    if serial is not None:
        try:
            number = parse_serial(serial)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--serial") from None
        if service_url is None and not logs:
            raise click.UsageError("--serial needs --service URL and/or --log FILE")
        if service_url is not None:
            token = _secret(admin_token_file, "--admin-token-file") if admin_token_file else None
            verify: str | bool = str(service_ca_file) if service_ca_file else True
            service = service_records(
                service_url, number, token=token, verify=verify, timeout=target.timeout
            )
    with connect(target) as client:
        entries = read_history(client, target.cluster)
    if serial is not None:
        print_trace(serial, entries, service=service, logs=logs, as_json=as_json)
        return
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table("epoch", "member", "from", "to", "reason", title=f"cluster {target.cluster}")
    for e in entries:
        table.add_row(str(e.epoch), e.name, e.since, e.to or "-", e.reason)
    Console().print(table)


def config_drift(members: Sequence[MemberInfo]) -> dict[str, str]:
    """Why each member that differs from the rest differs (members not named agree).

    The reference is the most common digest and the most common version among
    members that publish one; a member without a digest predates the field.
    """
    drift: dict[str, str] = {}
    for attr, what in (("config_digest", "configuration"), ("version", "version")):
        values = Counter(getattr(m, attr) for m in members if getattr(m, attr))
        if not values:
            continue
        usual, count = values.most_common(1)[0]
        tie = sum(1 for n in values.values() if n == count) > 1
        for m in members:
            value = getattr(m, attr)
            if not value:
                drift.setdefault(m.name, f"publishes no {what} (an older version)")
            elif value != usual or tie:
                reason = f"{what} {value}" + ("" if tie else f", most members {usual}")
                drift[m.name] = "; ".join(filter(None, (drift.get(m.name), reason)))
    return drift


@click.command("show-config")
@cluster_command
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show_config(target: ZkTarget, as_json: bool) -> None:
    """Each member's version and configuration digest, differences highlighted."""
    with connect(target) as client:
        status = read_cluster_status(client, target.cluster)
    drift = config_drift(status.members)
    rows = [
        {
            "name": m.name,
            "role": status.role_of(m.name),
            "version": m.version,
            "config_digest": m.config_digest,
            "differs": drift.get(m.name),
        }
        for m in status.members
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("member", "role", "version", "config digest", "differs", title=target.cluster)
    for row in rows:
        style = "bold yellow" if row["differs"] else ""
        cells = [str(row[k] or "-") for k in ("name", "role", "version", "config_digest")]
        table.add_row(*cells, row["differs"] or "", style=style)
    console = Console()
    console.print(table)
    if not rows:
        console.print("no members registered")
    elif not drift:
        console.print(f"all {len(rows)} members run the same version and configuration")
