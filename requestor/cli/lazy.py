"""A click group that imports a subcommand's module only when it is used.

``golem --help`` and ``golem --version`` must not pay for aiohttp, SQLAlchemy
or asyncssh, so subcommands are named here as ``"module:attribute"`` strings.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

_HELP_ONLY = "golem.help_only"


class LazyGroup(click.Group):
    def __init__(
        self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # A group alone ('golem', 'golem vm') is a request for help, not a usage
        # error: `invoke` shows it and the command ends with 0 (click's
        # no_args_is_help exits 2).
        if not args and not ctx.resilient_parsing:
            ctx.meta[_HELP_ONLY] = ctx  # meta is shared with subcommands: say whose
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.meta.get(_HELP_ONLY) is ctx:
            click.echo(ctx.get_help(), color=ctx.color)
            return None
        return super().invoke(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole one-line description (click would cut it
        to what fits beside the longest name; the formatter wraps it instead)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        module_name, attribute = self.lazy_subcommands[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attribute} is not a click command")
        return command
