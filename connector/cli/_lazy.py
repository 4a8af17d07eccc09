"""A click group whose subcommands are imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import click

__all__ = ["LazyGroup"]


def load_command(spec: str) -> click.Command:
    """Import ``"package.module:attribute"`` and check it is a click command."""
    module_name, _, attribute = spec.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{spec} is not a click command")
    return command


class LazyGroup(click.Group):
    """A group with a fixed table of ``name -> "module:attribute"`` subcommands.

    Importing lazily keeps ``pfxha status`` fast (no matplotlib, no FastAPI)
    and lets a broken module fail only the command that needs it, loudly.
    """

    def __init__(self, *args: object, lazy: Mapping[str, str] | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy: dict[str, str] = dict(lazy or {})

    def lazy_specs(self) -> dict[str, str]:
        return dict(self._lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_specs()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        spec = self.lazy_specs().get(cmd_name)
        if spec is None:
            return None
        try:
            return load_command(spec)
        except (ImportError, AttributeError) as exc:
            return _unavailable(cmd_name, exc)


def _unavailable(name: str, reason: Exception) -> click.Command:
    """A stand-in that keeps ``--help`` working and fails loudly when invoked."""

    def _fail() -> None:
        raise click.ClickException(f"command {name!r} is unavailable: {reason}")

    return click.Command(
        name, callback=_fail, help=f"(unavailable: {reason})", short_help="(unavailable)"
    )
