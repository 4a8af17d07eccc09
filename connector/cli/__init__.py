"""The ``pfxha`` command line.

The root group lives here; each area contributes its commands as a module of
this package (``connector``, ``status``, ``switchover``, ``pause``,
``resume``, ``history``, ``zk-exporter``). Packages that sit
above ``connector`` in the layering (``chaos``: ``service``, ``lab``, ``drill``,
``bench``) contribute theirs through the ``pfxha.commands`` entry-point group,
so that ``connector`` never imports ``chaos``::

    [project.entry-points."pfxha.commands"]
    drill = "chaos.cli:drill"
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import click

from connector._version import __version__
from connector.cli._lazy import LazyGroup

__all__ = ["main", "root"]

# Commands that live in this package: name -> "module:attribute".
_LOCAL_COMMANDS: dict[str, str] = {
    "connector": "connector.cli._connector:connector",
    "status": "connector.cli._status:status",
    "switchover": "connector.cli._status:switchover",
    "failover": "connector.cli._status:failover",
    "pause": "connector.cli._cluster:pause",
    "resume": "connector.cli._cluster:resume",
    "history": "connector.cli._cluster:history",
    "show-config": "connector.cli._cluster:show_config",
    "grant-member": "connector.cli._members:grant",
    "revoke-member": "connector.cli._members:revoke",
    "rotate-zk-auth": "connector.cli._members:rotate_zk_auth",
    "zk-exporter": "connector.cli._zk_exporter:zk_exporter",
}


class _PfxhaGroup(LazyGroup):
    """Local commands plus those other packages register as entry points."""

    def lazy_specs(self) -> dict[str, str]:
        specs = super().lazy_specs()
        for entry in entry_points(group="pfxha.commands"):
            specs.setdefault(entry.name, entry.value)
        return specs


@click.group(
    cls=_PfxhaGroup, lazy=_LOCAL_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="pfxha")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level for messages on stderr.",
)
def root(log_level: str) -> None:
    """pfxha: a highly available PFX certificate connector cluster."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def main() -> None:
    root(prog_name="pfxha")
