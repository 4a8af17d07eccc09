"""``pfxha connector``: run a connector agent, or enroll it with the service.

pfxha connector run --config /etc/pfxha/connector.toml
pfxha connector run --config /etc/pfxha/connector.toml --check            # settings, files, certdbs
pfxha connector run --config /etc/pfxha/connector.toml --check --online   # ... and ask each certdb
PFXHA_ZOOKEEPER_HOSTS=zk1:2181 pfxha connector run --config connector.toml --log-format json
pfxha connector enroll --service https://svc:8443 --token-file TOKEN --ca-file CA --out DIR
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from connector.agent.events import JsonFormatter
from connector.config import ConfigError, ConnectorConfig, load_config

__all__ = ["connector"]


@click.group()
def connector() -> None:
    """The connector agent."""


def _load(path: Path, *, every_problem: bool = False) -> ConnectorConfig:
    """The validated config; with ``every_problem`` all file problems are listed, not one."""
    from connector.config_files import file_problems

    try:
        config = load_config(path)
        problems = file_problems(config)
        if problems and not every_problem:
            raise problems[0]
        if not problems:
            # The election's timing rules; it reads the ZooKeeper password file.
            config.election_config()
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise click.ClickException(f"invalid configuration ({len(problems)} problems):\n{lines}")
    return config


@connector.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML configuration; every setting may be overridden by PFXHA_<SECTION>_<KEY>.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line with event_id and fields.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Validate the configuration and the files it names (exist, readable, secrets 0600, "
    "certificates parse and chain, identity key matches its certificate) and exit.",
)
@click.option(
    "--online",
    is_flag=True,
    help="With --check: also ask each CA's certdb whether it answers (as the connector would).",
)
def run(config_path: Path, log_format: str, check: bool, online: bool) -> None:
    """Run a connector: join the election, and act only while leading with a fresh lease."""
    config = _load(config_path, every_problem=check)
    if check:
        problems = _check_certdbs(config, online=online)
        if problems:
            raise click.ClickException(
                f"{config_path}: " + "; ".join(problems) + " (reconciliation would be blind)"
            )
        click.echo(
            f"{config_path}: ok (connector {config.connector.name!r}, "
            f"cluster {config.connector.cluster!r})"
        )
        return
    if online:
        raise click.UsageError("--online goes with --check")
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
    # Imported here so that --check and --help do not load kazoo and the CA clients.
    from connector.agent.runtime import run as run_agent
    from connector.identity import EnrollmentError, InsecureFileError

    try:
        run_agent(config)
    except (InsecureFileError, EnrollmentError) as exc:  # a clear refusal, not a traceback
        raise click.ClickException(str(exc)) from None


def _check_certdbs(config: ConnectorConfig, *, online: bool) -> list[str]:
    """Print where each CA's certdb is and whether it can be used; return the problems."""
    from connector.ca import CertDBError, open_certdb, redact_dsn
    from connector.identity import InsecureFileError, check_private_file

    problems: list[str] = []
    for ca in config.cas:
        setting = f"ca[{ca.name}]"
        if ca.reconcile == "off":
            click.echo(
                f"{setting}: reconcile = off: a deposed leader's orphans at this CA are "
                "never found (on purpose, loudly)",
                err=True,
            )
            continue
        source = ca.certdb_source
        assert source is not None  # the config refused a CA without one
        shown = redact_dsn(source) if ca.certdb_dsn else source
        if ca.certdb_password_file is not None:
            password_file = Path(ca.certdb_password_file)
            try:
                check_private_file(password_file)
            except FileNotFoundError:
                problems.append(f"{setting}.certdb_password_file: {password_file} does not exist")
                continue
            except InsecureFileError as exc:
                problems.append(f"{setting}.certdb_password_file: {exc}")
                continue
        if not online:
            click.echo(f"{setting}: certdb {shown} (not asked; --online asks it)")
            continue
        try:
            certdb = open_certdb(source, password_file=ca.certdb_password_file)
            certdb.ping()
        except CertDBError as exc:
            problems.append(f"{setting}.certdb_dsn: {exc}")
            continue
        click.echo(f"{setting}: certdb {shown} answers")
    return problems


@connector.command()
@click.option("--service", "service_url", required=True, help="The service's base URL (https).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File holding the one-time enrollment token (default: $PFXHA_ENROLL_TOKEN). "
    "Never pass a token on the command line: ps shows it.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for key.pem (0600), cert.pem and connector-ca.pem.",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA bundle that verifies the service's TLS certificate (default: system).",
)
@click.option("--name", default=None, help="Connector name (default: the token's).")
def enroll(
    service_url: str, token_file: Path | None, out_dir: Path, ca_file: Path | None, name: str | None
) -> None:
    """Exchange a one-time token for this connector's client certificate (issue 8)."""
    import os

    from connector.identity import EnrollmentError, InsecureFileError, check_private_file
    from connector.identity import enroll as do_enroll

    if token_file is not None:
        try:
            check_private_file(token_file)
        except InsecureFileError as exc:
            raise click.ClickException(str(exc)) from None
        token = token_file.read_text().strip()
    else:
        token = os.environ.get("PFXHA_ENROLL_TOKEN", "").strip()
    if not token:
        raise click.ClickException("no token: use --token-file FILE or set PFXHA_ENROLL_TOKEN")
    try:
        identity = do_enroll(
            service_url, token, out_dir, name=name, verify=str(ca_file) if ca_file else True
        )
    except EnrollmentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"enrolled {identity.name!r}: {identity.cert_path} (valid until {identity.not_after()})"
    )
