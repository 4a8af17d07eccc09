"""``pfxha connector``: run a connector agent (``enroll`` joins here with issue 8).

pfxha connector run --config /etc/pfxha/connector.toml
PFXHA_ZOOKEEPER_HOSTS=zk1:2181 pfxha connector run --config connector.toml --log-format json
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


def _load(path: Path) -> ConnectorConfig:
    try:
        config = load_config(path)
        config.election_config()  # the election's timing rules, checked before anything starts
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc
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
@click.option("--check", is_flag=True, help="Validate the configuration and exit.")
def run(config_path: Path, log_format: str, check: bool) -> None:
    """Run a connector: join the election, and act only while leading with a fresh lease."""
    config = _load(config_path)
    if check:
        click.echo(
            f"{config_path}: ok (connector {config.connector.name!r}, "
            f"cluster {config.connector.cluster!r})"
        )
        return
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
    # Imported here so that --check and --help do not load kazoo and the CA clients.
    from connector.agent.runtime import run as run_agent

    run_agent(config)
