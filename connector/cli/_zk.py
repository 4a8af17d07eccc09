"""What every cluster command shares: how it reaches ZooKeeper and how it fails.

    @click.command()
    @cluster_command
    def pause(target: ZkTarget, reason: str) -> None:
        with connect(target) as client:           # one clear line on any failure
            pause_cluster(client, target.cluster, reason, auth_digest=target.auth_digest)

``cluster_command`` adds ``--hosts``/``--cluster`` (or PFXHA_ZOOKEEPER_HOSTS,
PFXHA_CLUSTER), ``--auth-file`` (0600, ``USER:PASSWORD`` of a connector's digest
identity) or ``--auth``/PFXHA_ZOOKEEPER_AUTH, ``--timeout`` and ``-v`` and hands
the command one :class:`ZkTarget`. ``connect`` keeps kazoo's log lines out of
the output unless ``-v`` and turns every failure (ZooKeeper unreachable within
``--timeout``, NoAuth, a connection lost mid-command, a refused request) into a
one-line :class:`click.ClickException` (exit status 1), never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError

from election import ElectionError, open_client

__all__ = ["ZkTarget", "cluster_command", "connect"]


@dataclass(frozen=True)
class ZkTarget:
    """Which cluster a command talks to, as whom, and how long it waits for ZooKeeper."""

    hosts: str
    cluster: str
    auth_digest: tuple[str, str] | None
    timeout: float
    verbose: bool


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


_OPTIONS = (
    click.option(
        "--hosts",
        envvar="PFXHA_ZOOKEEPER_HOSTS",
        required=True,
        help="ZooKeeper connect string, e.g. 127.0.0.1:2181,127.0.0.1:2182.",
    ),
    click.option(
        "--cluster",
        envvar="PFXHA_CLUSTER",
        required=True,
        help="Cluster name (/pfxha/<cluster>).",
    ),
    click.option(
        "--auth-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="File (mode 0600) holding USER:PASSWORD of a connector's ZooKeeper digest "
        "identity; wins over --auth.",
    ),
    click.option(
        "--auth",
        envvar="PFXHA_ZOOKEEPER_AUTH",
        default=None,
        help="USER:PASSWORD when the cluster uses digest ACLs "
        "(prefer PFXHA_ZOOKEEPER_AUTH or --auth-file: ps shows command lines).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1, max=300),
        default=10.0,
        show_default=True,
        help="Seconds to reach ZooKeeper before giving up.",
    ),
    click.option(
        "-v", "--verbose", is_flag=True, help="Also print the ZooKeeper client's log lines."
    ),
)


def cluster_command(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared ZooKeeper options; ``command`` gets them as ``target: ZkTarget``."""

    @functools.wraps(command)
    def wrapper(
        *,
        hosts: str,
        cluster: str,
        auth_file: Path | None,
        auth: str | None,
        timeout: float,
        verbose: bool,
        **kwargs: object,
    ) -> None:
        digest = _resolve_auth(auth, auth_file)
        command(ZkTarget(hosts, cluster, digest, timeout, verbose), **kwargs)

    decorated: Callable[..., None] = wrapper
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


@contextlib.contextmanager
def connect(target: ZkTarget) -> Iterator[KazooClient]:
    """A started client for ``target``; every failure becomes one line and exit status 1."""
    kazoo_log = logging.getLogger("kazoo")
    if not target.verbose:
        # kazoo logs every refused connect and reconnect: noise for a one-shot command.
        kazoo_log.setLevel(logging.CRITICAL + 1)
    where = f"ZooKeeper at {target.hosts}"
    try:
        # The session outlives a reconnect for as long as the command is willing to wait.
        session = min(max(target.timeout, 2.0), 30.0)
        with open_client(
            target.hosts,
            auth_digest=target.auth_digest,
            timeout=target.timeout,
            session_timeout=session,
        ) as client:
            yield client
    except click.ClickException:
        raise
    except ElectionError as exc:  # refused on purpose: the message says why
        raise click.ClickException(str(exc)) from None
    except KazooTimeoutError:
        raise click.ClickException(
            f"cannot reach {where} within --timeout={target.timeout:g}s "
            "(is the ensemble up, is the connect string right?)"
        ) from None
    except NoAuthError:
        raise click.ClickException(
            f"{where} refused a write under /pfxha/{target.cluster}: NoAuth (give a "
            "connector's ZooKeeper credentials: --auth-file FILE holding USER:PASSWORD)"
        ) from None
    except ValueError as exc:  # kazoo parses the connect string when the client is made
        raise click.ClickException(
            f"--hosts {target.hosts!r} is not a ZooKeeper connect string: {exc}"
        ) from None
    except (KazooException, OSError) as exc:
        raise click.ClickException(
            f"lost {where} during the command: {type(exc).__name__} {exc}".rstrip()
        ) from None
