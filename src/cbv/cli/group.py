"""The `cbv` command group: subcommands imported only when run, usage errors on one line.

A script that calls `cbv verify` once per address pays the start-up each time, so the group
names its subcommands by module and imports only the one asked for (the daemon and the HTTP
stack take longer to import than a syntax-only verdict takes to give). Click prints a usage
block for a bad command line; cbv promises one line on stderr and exit status 2, for every
subcommand alike, so the group turns each usage error into that line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click


def one_line(error: click.ClickException) -> str:
    """`cbv: error: ...`, naming the command whose usage was wrong and where help is."""
    message = " ".join(error.format_message().split()).rstrip(".")
    context = getattr(error, "ctx", None)
    if isinstance(error, click.UsageError) and context is not None:
        return f"cbv: error: {message} (see '{context.command_path} --help')"
    return f"cbv: error: {message}"


class CbvGroup(click.Group):
    """`lazy` maps a subcommand's name to `module:attribute`, imported when it is used."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as error:
            click.echo(one_line(error), err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("cbv: interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)
