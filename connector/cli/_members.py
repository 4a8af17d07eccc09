"""``pfxha grant-member`` and ``pfxha revoke-member``: who may act for the cluster.

    pfxha grant-member c4 --password-file /etc/pfxha/credentials/zk-c4 \\
        --hosts zk1:2181 --cluster prod --auth-file /etc/pfxha/credentials/zk-admin
    pfxha revoke-member c2 --hosts zk1:2181 --cluster prod \\
        --auth-file /etc/pfxha/credentials/zk-admin \\
        [--service https://svc:8443 --admin-token-file F --service-ca-file F]
    pfxha rotate-zk-auth c1 --new-password-file F --phase begin|finish [--force] \\
        --hosts zk1:2181 --cluster prod --auth-file /etc/pfxha/credentials/zk-admin

``--auth-file`` holds ``USER:PASSWORD`` of the operator's ZooKeeper **admin**
identity (0600): the only one with ADMIN on the cluster's nodes, so the only
one that can change their ACLs (:mod:`election._acl`). ``grant-member``
provisions the layout on first use (the member and the admin on every ACL,
world READ) and adds a member later. ``revoke-member`` takes the member off
every ACL, deletes its member, election and leader nodes (a leader loses the
lease at once), and with ``--service`` revokes its certificate at the
service too (403 on every later call: its agent leaves the election). Its CA
access is the CA hosts' to remove (its CN out of ``cfssl serve
-mutual-tls-cn``, docs/pki.md): the command says so. ``rotate-zk-auth`` changes
a member's password without lockout (:mod:`election._rotate`): ``begin`` makes
the new password valid next to the old one, the member is restarted with the
new file, ``finish`` removes the old one once that process has been replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import httpx

from connector.cli._zk import ZkTarget, cluster_command, connect
from connector.identity import InsecureFileError, check_private_file
from election import (
    ClusterPaths,
    RotationError,
    begin_rotation,
    finish_rotation,
    grant_member,
    layout_acl,
    provision,
    revoke_member,
)

__all__ = ["grant", "revoke", "rotate_zk_auth"]


def _file_option(
    flag: str, help_text: str, *, required: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """An option naming an existing file (secrets among them are checked 0600 on use)."""
    return click.option(
        flag,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        required=required,
        default=None,
        help=help_text,
    )


def _admin(target: ZkTarget) -> tuple[str, str]:
    if target.auth_digest is None:
        raise click.UsageError("the ZooKeeper admin identity is required: --auth-file FILE")
    return target.auth_digest


def _secret(path: Path, option: str) -> str:
    try:
        check_private_file(path)
    except InsecureFileError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    value = path.read_text().strip()
    if not value:
        raise click.BadParameter(f"{path} is empty", param_hint=option)
    return value


@click.command("grant-member")
@click.argument("name")
@_file_option(
    "--password-file",
    "0600 file with the member's own ZooKeeper password (its auth_password_file).",
    required=True,
)
@cluster_command
def grant(target: ZkTarget, name: str, password_file: Path) -> None:
    """Let member NAME (ZooKeeper user NAME) act for the cluster; provision it if new."""
    admin = _admin(target)
    password = _secret(password_file, "--password-file")
    paths = ClusterPaths(target.cluster)
    with connect(target) as client:
        if client.exists(paths.epoch) is None:
            provision(client, paths, layout_acl({name: password}, admin))
            click.echo(f"provisioned {paths.base} for {name} (admin {admin[0]})")
            return
        changed = grant_member(client, paths, name, password)
    click.echo(f"{name} on the ACL of {', '.join(changed) or 'every node already'}")


@click.command("revoke-member")
@click.argument("name")
@click.option("--service", "service_url", default=None, help="Also revoke NAME at the service.")
@_file_option("--admin-token-file", "0600 file with the service's admin token (with --service).")
@_file_option(
    "--service-ca-file", "CA that verifies the service's TLS certificate (with --service)."
)
@cluster_command
def revoke(
    target: ZkTarget,
    name: str,
    service_url: str | None,
    admin_token_file: Path | None,
    service_ca_file: Path | None,
) -> None:
    """Take member NAME off every ACL and out of the election (and revoke it at the service)."""
    _admin(target)
    if service_url is not None:
        if admin_token_file is None:
            raise click.UsageError("--service needs --admin-token-file")
        token = _secret(admin_token_file, "--admin-token-file")
        reply = httpx.post(
            f"{service_url.rstrip('/')}/api/v1/admin/connectors/{name}/revoke",
            json={"reason": "pfxha revoke-member"},
            headers={"Authorization": f"Bearer {token}"},
            verify=str(service_ca_file) if service_ca_file else True,
            timeout=10.0,
        )
        if reply.status_code >= 300:
            raise click.ClickException(
                f"the service refused the revocation: HTTP {reply.status_code} {reply.text[:200]}"
            )
        click.echo(f"{name} revoked at the service: every later call is 403")
    with connect(target) as client:
        report = revoke_member(client, ClusterPaths(target.cluster), name)
    click.echo(f"{name} off the ACL of {', '.join(report.acl_paths) or 'no node (not listed)'}")
    click.echo(f"deleted {', '.join(report.deleted) or 'no node of it (not running)'}")
    click.echo(
        f"CA access: remove {name} from every issuing CA's -mutual-tls-cn and restart it "
        "(docs/pki.md, 'Mutual TLS to the CA')"
    )


@click.command("rotate-zk-auth")
@click.argument("name")
@_file_option(
    "--new-password-file",
    "0600 file with the member's new ZooKeeper password (its next auth_password_file).",
    required=True,
)
@click.option(
    "--phase",
    type=click.Choice(["begin", "finish"]),
    required=True,
    help="begin: old and new password both valid; finish: only the new one (after the "
    "member was restarted with it).",
)
@click.option(
    "--force",
    is_flag=True,
    help="finish although the member still runs the process from before begin.",
)
@cluster_command
def rotate_zk_auth(
    target: ZkTarget, name: str, new_password_file: Path, phase: str, force: bool
) -> None:
    """Change member NAME's ZooKeeper password with no moment where it is locked out."""
    admin = _admin(target)
    password = _secret(new_password_file, "--new-password-file")
    paths = ClusterPaths(target.cluster)
    with connect(target) as client:
        try:
            if phase == "begin":
                changed = begin_rotation(client, paths, name, password, admin_user=admin[0])
            else:
                changed = finish_rotation(client, paths, name, password, force=force)
        except RotationError as exc:
            raise click.ClickException(f"rotate-zk-auth {name} --phase {phase}: {exc}") from None
    where = ", ".join(changed) or "no node (already done)"
    if phase == "begin":
        click.echo(f"{name}: old and new password both valid on {where}")
        click.echo(
            f"next: put the new password in {name}'s auth_password_file and restart it "
            "(the leader after `pfxha switchover`), then run --phase finish"
        )
    else:
        click.echo(f"{name}: only the new password is valid on {where}")
