"""Commands the chaos package adds to ``pfxha`` (registered as entry points).

Each group maps its subcommands to the module that implements them, imported
only when used.
"""

from __future__ import annotations

import click

from connector.cli._lazy import LazyGroup

__all__ = ["bench", "lab", "service"]


@click.group(
    cls=LazyGroup,
    lazy={"run": "chaos.service.cli:run", "import-pfx": "chaos.service.import_cli:import_pfx"},
)
def service() -> None:
    """The stand-in cloud certificate service."""


@click.group(
    cls=LazyGroup,
    lazy={
        "up": "chaos.lab.cli:up",
        "down": "chaos.lab.cli:down",
        "status": "chaos.lab.cli:status",
    },
)
def lab() -> None:
    """A whole pfxha cluster on this machine: ZooKeeper x3, CFSSL CAs, service, connectors."""


@click.group(
    cls=LazyGroup,
    lazy={
        "election": "chaos.bench.election:command",
        "pki": "chaos.bench.pki:command",
        "flow": "chaos.bench.flow:command",
        "runs": "chaos.bench.runs:command",
        "ca-tls": "chaos.bench.ca_tls:command",
    },
)
def bench() -> None:
    """Benchmarks that print figures and write JSON."""
